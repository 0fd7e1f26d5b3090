//! Natural persons on the command line and in import rows. No one holds the key persons
//! are keyed under (the members hold shares, docs/privacy.md): the CLI validates the clear
//! numbers here, then asks the node for the form records carry (`POST /v1/persons/refs`),
//! so a clear number leaves this machine only inside the TLS connection to the node.

use std::collections::BTreeMap;

use credfed_client::{MAX_PERSONS_PER_REQUEST, PersonRefsAnswer, PersonRefsRequest, PersonToHash};
use credfed_protocol::crypto::sha256;
use credfed_protocol::ids::PersonRef;
use credfed_protocol::ids::person::mask;

use super::*;

/// A person named by clear number, validated, with the option or column it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPerson {
    /// Where it was given, for error messages (`--person`, `--related[2]`, `related`).
    pub field: String,
    /// The role, for a related person; `None` for the subject.
    pub role: Option<RelatedRole>,
    /// Normalised number.
    pub number: String,
    /// Name as on the decision document.
    pub name: String,
}

/// Validates a clear resident identity number given in `field`.
pub fn person_number(text: &str, field: &str) -> Result<String, Failure> {
    let n = resident_id::normalise(text);
    resident_id::validate(&n, "number").map_err(|e| {
        invalid(format!(
            "{field}: {}",
            e.to_string().trim_start_matches("number: ")
        ))
    })?;
    Ok(n)
}

/// Parses `ROLE:NUMBER:NAME` (a related person of article 十四).
pub fn related_person(text: &str, field: &str) -> Result<NamedPerson, Failure> {
    let roles = RelatedRole::ALL
        .iter()
        .map(|r| serde_json::to_value(r).map(|v| s(&v)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(", ");
    let mut parts = text.splitn(3, ':');
    let (Some(role), Some(number), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid(format!(
            "{field}: '{}' is not ROLE:NUMBER:NAME (e.g. legal_representative:110101199003071234:张三); roles: {roles}",
            mask_in(text)
        )));
    };
    let role: RelatedRole = choice(role.trim(), &format!("{field}.role"), &roles)?;
    let number = person_number(number, &format!("{field}.number"))?;
    if name.trim().is_empty() {
        return Err(invalid(format!("{field}.name: required")));
    }
    Ok(NamedPerson {
        field: field.to_owned(),
        role: Some(role),
        number,
        name: name.trim().to_owned(),
    })
}

/// A text that may hold a clear number, shown with every digit run of 15 or more masked
/// (error messages end up in terminals and logs).
fn mask_in(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 15 {
            out.push_str(&mask(&format!("{run:0<18}")[..18]));
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || (c == 'X' && !run.is_empty()) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A stand-in for the node's answer, used to validate a record before the node is asked:
/// the mask is the real one, the hash a local digest that never leaves this process.
pub fn provisional_ref(p: &NamedPerson) -> PersonRef {
    PersonRef {
        id_hash: sha256(&[b"credfed-cli-provisional", p.number.as_bytes()]),
        masked: mask(&p.number),
        name: p.name.clone(),
    }
}

/// Asks the node for the refs of `persons`, [`MAX_PERSONS_PER_REQUEST`] at a time, keyed
/// by (number, name).
pub async fn resolve(
    node: &NodeArgs,
    c: &credfed_client::ApiClient,
    persons: &[NamedPerson],
) -> Result<BTreeMap<(String, String), PersonRef>, Failure> {
    let mut unique: Vec<PersonToHash> = persons
        .iter()
        .map(|p| PersonToHash {
            number: p.number.clone(),
            name: p.name.clone(),
        })
        .collect();
    unique.sort_by(|a, b| (&a.number, &a.name).cmp(&(&b.number, &b.name)));
    unique.dedup();
    let mut out = BTreeMap::new();
    for chunk in unique.chunks(MAX_PERSONS_PER_REQUEST) {
        let request = PersonRefsRequest {
            persons: chunk.to_vec(),
        };
        let r = call(node, c.post("/v1/persons/refs", &request)).await?;
        let answer: PersonRefsAnswer = serde_json::from_str(&r.body)
            .map_err(|e| invalid(format!("the node's person refs: {e}")))?;
        if answer.refs.len() != chunk.len() {
            return Err(invalid(format!(
                "the node answered {} person refs for {} persons",
                answer.refs.len(),
                chunk.len()
            )));
        }
        for (p, r) in chunk.iter().zip(answer.refs) {
            out.insert((p.number.clone(), p.name.clone()), r);
        }
    }
    Ok(out)
}

/// Looks a person up in [`resolve`]'s answer.
pub fn resolved(
    refs: &BTreeMap<(String, String), PersonRef>,
    p: &NamedPerson,
) -> Result<PersonRef, Failure> {
    refs.get(&(p.number.clone(), p.name.clone()))
        .cloned()
        .ok_or_else(|| invalid(format!("{}: the node returned no ref", p.field)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A related person needs all three parts, a known role and a valid number; an error
    /// never repeats the clear number.
    #[test]
    fn related_person_parsing() {
        let p = related_person(
            "legal_representative:11010519491231002X:张三",
            "--related[0]",
        )
        .unwrap();
        assert_eq!(p.role, Some(RelatedRole::LegalRepresentative));
        assert_eq!(p.number, "11010519491231002X");
        let e = related_person("chairman:11010519491231002X:张三", "--related[0]").unwrap_err();
        assert!(e.message.contains("--related[0].role"), "{}", e.message);
        let e = related_person("11010519491231002X", "--related[1]").unwrap_err();
        assert!(e.message.contains("ROLE:NUMBER:NAME"), "{}", e.message);
        assert!(!e.message.contains("11010519491231002X"), "{}", e.message);
        let e = related_person("actual_controller:110105194912310021:李四", "--related[2]")
            .unwrap_err();
        assert!(e.message.contains("--related[2].number"), "{}", e.message);
    }
}
