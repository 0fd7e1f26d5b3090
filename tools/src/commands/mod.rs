//! What each command does: shared helpers here, one module per group of commands.

mod federation;
mod ids;
mod measures;
mod person_key;
pub mod persons;
mod query;
mod records;

use std::path::Path;

use credfed_client::{ApiClient, ApiResponse, ClientError, SubmitRecord};
use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::check::{CheckAnswer, verify_answer};
use credfed_protocol::crypto::{Keypair, PublicKey};
use credfed_protocol::envelope::sign_body;
use credfed_protocol::federation::{ProvenAnswer, RegionStanding, verify_proven_answer};
use credfed_protocol::ids::{DepartmentId, PersonRef, RegionCode, Role, resident_id, uscc};
use credfed_protocol::manifest::{Manifest, Member, SignedManifest};
use credfed_protocol::record::*;
use credfed_protocol::time::{Date, Timestamp};
use serde_json::{Value, json};

use crate::cli::*;
use crate::output::{emit, s, table};
use crate::{Failure, exit};

type Res = Result<(), Failure>;

/// Parses the snake_case name of a unit variant (as the records spell it in JSON), or
/// names the allowed ones.
fn choice<T: serde::de::DeserializeOwned>(
    text: &str,
    field: &str,
    allowed: &str,
) -> Result<T, Failure> {
    serde_json::from_value(json!(text))
        .map_err(|_| invalid(format!("{field}: '{text}' is not one of {allowed}")))
}

fn invalid(m: impl Into<String>) -> Failure {
    Failure::new(exit::INVALID, m)
}

pub fn date(text: &str, field: &str) -> Result<Date, Failure> {
    Date::parse(text).map_err(|e| invalid(format!("{field}: {e}")))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| invalid(e.to_string()))
}

pub fn client(n: &NodeArgs) -> Result<ApiClient, Failure> {
    ApiClient::with_identity(&n.node, &n.ca, &n.cert, &n.cert_key).map_err(|e| client_failure(n, e))
}

/// Sends a request, mapping "cannot connect" (and no answer in time) to exit code 3
/// with the address tried, and an error status to exit code 1 with the node's message.
pub async fn call(
    n: &NodeArgs,
    req: impl std::future::Future<Output = Result<ApiResponse, ClientError>>,
) -> Result<ApiResponse, Failure> {
    let r = req.await.map_err(|e| client_failure(n, e))?;
    if r.status >= 400 {
        return Err(refused(&r));
    }
    Ok(r)
}

/// The exit code and message of a request that got no usable answer.
pub fn client_failure(n: &NodeArgs, e: ClientError) -> Failure {
    match e {
        ClientError::Unreachable { .. } | ClientError::Timeout { .. } | ClientError::Tls { .. } => {
            Failure::new(
                exit::UNREACHABLE,
                format!(
                    "{e}. Point --node / CREDFED_NODE at the right address ({} now)",
                    n.node
                ),
            )
        }
        ClientError::Config(_) => invalid(format!(
            "{e}; check --ca, --cert and --cert-key (CREDFED_CA, CREDFED_CERT, CREDFED_CERT_KEY)"
        )),
        other => Failure::new(exit::REFUSED, other.to_string()),
    }
}

fn refused(r: &ApiResponse) -> Failure {
    let v = r.json().ok();
    let msg = v
        .as_ref()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| r.body.clone());
    let code = v
        .as_ref()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let hint = match (r.status, code.as_str()) {
        (401, "no_client_certificate" | "unknown_client_certificate") => {
            " (is --cert/--cert-key the client certificate this node issued to the department? A certificate from another node's CA is refused)"
        }
        (401, _) => " (is the department registered, and is --key the key it was registered with?)",
        (403, "not_allowed") => {
            " (does the department hold the role, and is it a department of this node's region?)"
        }
        (409, _) => " (already recorded, or the record's state forbids it)",
        (422, _) => {
            " (the rule cited says what may apply: `credfed measures list` shows the catalogue, docs/measures.md explains it)"
        }
        (503, "person_checks_unavailable") => {
            " (too few members holding person-key shares are connected to this node: `credfed status` shows how many; organisation commands still work; retry when members are back)"
        }
        (503, "writes_paused") => {
            " (the node cannot write right now: the message says what it waits for; `credfed status` shows whether that has ended)"
        }
        (503, "no_quorum" | "proofs_unavailable") => {
            " (too few members cosigned a federation checkpoint just now; retry shortly, or ask without proofs)"
        }
        (503, _) => " (the node cannot answer this now; the message says why; retry shortly)",
        _ => "",
    };
    Failure::new(
        exit::REFUSED,
        format!("the node refused: {} {msg}{hint}", r.status),
    )
}

fn federation_id(manifest: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(manifest)
        .map_err(|e| invalid(format!("reading manifest {}: {e}", manifest.display())))?;
    let signed: SignedManifest = serde_json::from_str(&text).map_err(|e| {
        invalid(format!(
            "{}: not a signed manifest: {e}",
            manifest.display()
        ))
    })?;
    let m: Manifest = credfed_protocol::codec::decode(
        &signed.manifest,
        credfed_protocol::limits::MAX_MANIFEST_BYTES,
        "manifest",
    )
    .map_err(|e| invalid(e.to_string()))?;
    Ok(m.federation_id)
}

fn read_key(path: &Path) -> Result<Keypair, Failure> {
    credfed_client::keys::read_key(path).map_err(|e| invalid(format!("{e:#}")))
}

/// Signs `body` as `sign.author` and submits it (or prints it with --dry-run).
pub fn sign_and_submit(mode: Output, sign: &SignArgs, node: &NodeArgs, body: &Body) -> Res {
    body.validate().map_err(|e| invalid(format!("body.{e}")))?;
    let author =
        DepartmentId::parse(&sign.author, "--author").map_err(|e| invalid(e.to_string()))?;
    let fed = federation_id(&sign.manifest)?;
    let key = read_key(&sign.key)?;
    let (bytes, sig) = sign_body(&fed, &key, body);
    let req = SubmitRecord::from_parts(&author, &bytes, &sig);
    if sign.dry_run {
        emit(
            mode,
            &json!({"request": req, "body": body, "signer_public_key": key.public().to_hex()}),
            || {
                format!(
                    "signed {:?} by {author} (key {}), not submitted:\n{}",
                    body.kind(),
                    key.public(),
                    serde_json::to_string_pretty(&req).unwrap_or_default()
                )
            },
        );
        return Ok(());
    }
    let c = client(node)?;
    let r = runtime()?.block_on(async { call(node, c.post("/v1/records", &req)).await })?;
    let v = r.json().map_err(|e| invalid(e.to_string()))?;
    let id = derived_id(&author, body);
    let mut out =
        json!({"region": v["region"], "seq": v["seq"], "hash": v["hash"], "kind": body.kind()});
    if let Some((k, id)) = &id {
        out[k] = json!(id);
    }
    emit(mode, &out, || {
        let extra = id
            .map(|(k, id)| format!("\n  {k}: {id}"))
            .unwrap_or_default();
        format!(
            "recorded {:?} at {}#{} (hash {}){extra}",
            body.kind(),
            s(&v["region"]),
            s(&v["seq"]),
            &s(&v["hash"]).chars().take(16).collect::<String>()
        )
    });
    Ok(())
}

/// The id a body creates, for the user to refer to it later.
pub fn derived_id(author: &DepartmentId, body: &Body) -> Option<(&'static str, String)> {
    match body {
        Body::ListEntryPublished(e) => {
            Some(("entry", entry_id(author.home_province(), e).to_string()))
        }
        Body::JointActionInitiated(a) => {
            Some(("action", action_id(author, &a.reference).to_string()))
        }
        Body::ObjectionFiled { case_no, .. } => {
            Some(("objection", objection_id(author, case_no).to_string()))
        }
        Body::EvaluationPublished(ev) => {
            Some(("evaluation", evaluation_id(author, ev).to_string()))
        }
        _ => None,
    }
}

/// A record id given in full (64 hex digits) or by a unique prefix of at least 8, which
/// the node resolves among the records of `kind` (`entry`, `action`, `evaluation`,
/// `objection`) it holds.
fn resolve_id(
    text: &str,
    field: &str,
    kind: &str,
    node: &NodeArgs,
) -> Result<credfed_protocol::crypto::Hash256, Failure> {
    let text = id_prefix(text, field, kind)?;
    if text.len() == 64 {
        return credfed_protocol::crypto::Hash256::from_hex(&text)
            .map_err(|e| invalid(format!("{field}: {e}")));
    }
    let v = get_json(node, &format!("/v1/ids/{text}?kind={kind}"))?;
    let ids: Vec<String> = v["matches"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    one_id(
        &ids,
        &text,
        field,
        &format!("{kind} on this node"),
        "check the id, or wait until the record has replicated here",
    )
}

/// An id or id prefix as typed: 8 to 64 hex digits, lower-cased, or the error naming
/// `field` and what to give.
fn id_prefix(text: &str, field: &str, kind: &str) -> Result<String, Failure> {
    let text = text.trim().to_ascii_lowercase();
    if text.len() < 8 || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(format!(
            "{field}: '{text}' is not a {kind} id: give its 64 hex digits, or a unique prefix of at least 8 (as tables show them)"
        )));
    }
    Ok(text)
}

/// The one id among `ids` (those starting with `prefix`), or why not: none (with
/// `none_hint`) or several.
fn one_id(
    ids: &[String],
    prefix: &str,
    field: &str,
    kind: &str,
    none_hint: &str,
) -> Result<credfed_protocol::crypto::Hash256, Failure> {
    match ids {
        [one] => credfed_protocol::crypto::Hash256::from_hex(one)
            .map_err(|e| invalid(format!("{field}: {one}: {e}"))),
        [] => Err(invalid(format!(
            "{field}: no {kind} starts with {prefix}; {none_hint}"
        ))),
        several => Err(invalid(format!(
            "{field}: {prefix} starts more than one {kind} ({}); give more digits",
            several.join(", ")
        ))),
    }
}

fn measures(list: &[String]) -> Vec<MeasureCode> {
    let mut v: Vec<MeasureCode> = list
        .iter()
        .filter(|m| !m.is_empty())
        .map(|m| MeasureCode(m.trim().to_string()))
        .collect();
    v.sort();
    v.dedup();
    v
}

pub fn category(list: &str, name: &str) -> Result<Category, Failure> {
    let l = match list {
        "black" | "red" => list,
        other => {
            return Err(invalid(format!(
                "--list: '{other}' is neither black nor red"
            )));
        }
    };
    serde_json::from_value(json!({ l: name })).map_err(|_| {
        let names: Vec<String> = if l == "black" {
            BlackCategory::ALL
                .iter()
                .map(|c| serde_json::to_value(c).map(|v| s(&v)).unwrap_or_default())
                .collect()
        } else {
            vec![
                "good_credit_classification",
                "moral_model",
                "outstanding_youth_volunteer",
                "association_recommended_member",
                "media_identified",
                "no_adverse_record",
            ]
            .into_iter()
            .map(String::from)
            .collect()
        };
        invalid(format!(
            "--category: '{name}' is not a {l}-list category; one of: {}",
            names.join(", ")
        ))
    })
}

/// The persons an entry's fields name, validated: the subject first if it is a person,
/// then the related persons in the order given.
pub fn persons_of(f: &EntryFields) -> Result<Vec<persons::NamedPerson>, Failure> {
    let mut out = Vec::new();
    if let Some(number) = &f.person {
        out.push(persons::NamedPerson {
            field: "--person".into(),
            role: None,
            number: persons::person_number(number, "--person")?,
            name: f.name.trim().to_owned(),
        });
    }
    for (i, r) in f.related.iter().enumerate() {
        out.push(persons::related_person(r, &format!("--related[{i}]"))?);
    }
    Ok(out)
}

/// Builds an entry from its fields; `person_ref` gives the record form of each person
/// [`persons_of`] names (the node's answer, or a provisional one to validate offline).
pub fn entry_from_fields(
    f: &EntryFields,
    person_ref: &dyn Fn(&persons::NamedPerson) -> Result<PersonRef, Failure>,
) -> Result<ListEntry, Failure> {
    let decided_on = date(&f.decided_on, "--decided-on")?;
    let named = persons_of(f)?;
    let subject = match (&f.uscc, named.first().filter(|p| p.role.is_none())) {
        (Some(code), None) => Subject::Organisation {
            uscc: code.trim().to_ascii_uppercase(),
            name: f.name.clone(),
            check_exemption: f
                .check_exemption
                .clone()
                .map(|reason| CheckExemption { reason }),
        },
        (None, Some(p)) => {
            if f.check_exemption.is_some() {
                return Err(invalid(
                    "--check-exemption: only for an organisation's code (--uscc)",
                ));
            }
            Subject::Person(person_ref(p)?)
        }
        _ => return Err(invalid("--uscc: give exactly one of --uscc and --person")),
    };
    let mut related_persons = Vec::new();
    for p in named.iter().filter(|p| p.role.is_some()) {
        if let Some(role) = p.role {
            related_persons.push(RelatedPerson {
                role,
                person: person_ref(p)?,
            });
        }
    }
    related_persons.sort();
    related_persons.dedup();
    let mut findings: Vec<Finding> = f
        .findings
        .iter()
        .filter(|x| !x.trim().is_empty())
        .map(|x| choice(x.trim(), "--findings", "able_but_refuses"))
        .collect::<Result<_, _>>()?;
    findings.sort();
    findings.dedup();
    Ok(ListEntry {
        category: category(&f.list, &f.category)?,
        subject,
        related_persons,
        basis: Basis {
            document_no: f.document_no.clone(),
            authority: f.authority.clone(),
            decided_on,
            legal_basis: f.legal_basis.clone(),
        },
        effective_from: match &f.effective_from {
            Some(d) => date(d, "--effective-from")?,
            None => decided_on,
        },
        expires_on: date(&f.expires_on, "--expires-on")?,
        requested_measures: measures(&f.measures),
        findings,
        summary: f.summary.clone(),
    })
}

/// Builds an entry, asking the node for the record form of the persons it names.
pub fn entry_with_persons(f: &EntryFields, node: &NodeArgs) -> Result<ListEntry, Failure> {
    let named = persons_of(f)?;
    // Validate everything offline first: a bad row costs no hashing at the node.
    let draft = entry_from_fields(f, &|p| Ok(persons::provisional_ref(p)))?;
    if named.is_empty() {
        return Ok(draft);
    }
    Body::ListEntryPublished(draft)
        .validate()
        .map_err(|e| invalid(format!("body.{e}")))?;
    let c = client(node)?;
    let refs = runtime()?.block_on(persons::resolve(node, &c, &named))?;
    entry_from_fields(f, &|p| persons::resolved(&refs, p))
}

/// The subject of an evaluation: an organisation by code, or a person via the node.
pub fn subject_with_person(
    uscc: Option<&str>,
    person: Option<&str>,
    name: &str,
    node: &NodeArgs,
) -> Result<Subject, Failure> {
    match (uscc, person) {
        (Some(code), None) => Ok(Subject::Organisation {
            uscc: code.trim().to_ascii_uppercase(),
            name: name.to_owned(),
            check_exemption: None,
        }),
        (None, Some(number)) => {
            let p = persons::NamedPerson {
                field: "--person".into(),
                role: None,
                number: persons::person_number(number, "--person")?,
                name: name.trim().to_owned(),
            };
            let c = client(node)?;
            let refs = runtime()?.block_on(persons::resolve(node, &c, std::slice::from_ref(&p)))?;
            Ok(Subject::Person(persons::resolved(&refs, &p)?))
        }
        _ => Err(invalid("--uscc: give exactly one of --uscc and --person")),
    }
}

fn get_json(node: &NodeArgs, path: &str) -> Result<Value, Failure> {
    let c = client(node)?;
    let r = runtime()?.block_on(async { call(node, c.get(path)).await })?;
    r.json().map_err(|e| invalid(e.to_string()))
}

pub fn run(cli: Cli) -> Res {
    let mode = cli.output;
    match cli.command {
        Cmd::Id {
            command: IdCmd::Check { codes, kind },
        } => ids::id_check(mode, &codes, kind),
        Cmd::Key { command } => federation::key(mode, command),
        Cmd::Federation { command } => federation::federation(mode, command),
        Cmd::Dept { command } => records::dept(mode, command),
        Cmd::Entry { command } => records::entry(mode, command),
        Cmd::Evaluation { command } => records::evaluation(mode, command),
        Cmd::Action { command } => records::action(mode, command),
        Cmd::Objection { command } => records::objection(mode, command),
        Cmd::Repair { command } => records::repair(mode, command),
        Cmd::Commitment { command } => records::commitment(mode, command),
        Cmd::Disclosure { command } => records::disclosure(mode, command),
        Cmd::Submit { file, sign, node } => records::submit_file(mode, &file, &sign, &node),
        Cmd::Import(args) => crate::import::run(mode, &args),
        Cmd::Check {
            code,
            kind,
            domain,
            save,
            proofs,
            evidence,
            node,
        } => query::check(
            mode,
            &code,
            kind,
            &domain,
            query::CheckOutputs {
                save: save.as_deref(),
                proofs,
                evidence: evidence.as_deref(),
            },
            &node,
        ),
        Cmd::Verify {
            answer,
            max_age,
            at,
            partial,
            manifest,
            authority_key,
            trust_manifest,
            person,
            node,
            ca,
            cert,
            cert_key,
        } => {
            let node_args = match (&person, ca, cert, cert_key) {
                (None, ..) => None,
                (Some(_), Some(ca), Some(cert), Some(cert_key)) => Some(NodeArgs {
                    node: node.unwrap_or_else(|| "127.0.0.1:8443".into()),
                    ca,
                    cert,
                    cert_key,
                }),
                (Some(_), ..) => {
                    return Err(invalid(
                        "--person: your node computes the person key, so give its --ca, --cert and --cert-key (or CREDFED_CA, CREDFED_CERT, CREDFED_CERT_KEY)",
                    ));
                }
            };
            query::verify(
                mode,
                &answer,
                query::Trust {
                    manifest: manifest.as_deref(),
                    authority_key: authority_key.as_deref(),
                    trust_manifest,
                },
                query::Freshness {
                    max_age,
                    at,
                    partial,
                },
                person.as_deref().zip(node_args.as_ref()),
            )
        }
        Cmd::VerifyEvidence {
            evidence,
            manifest,
            authority_key,
            trust_manifest,
        } => query::verify_evidence(
            mode,
            &evidence,
            query::Trust {
                manifest: Some(&manifest),
                authority_key: authority_key.as_deref(),
                trust_manifest,
            },
        ),
        Cmd::Measures { command } => measures::measures(mode, command),
        Cmd::Report {
            period,
            from,
            to,
            csv,
            xlsx,
            node,
        } => query::report(
            mode,
            &period,
            from.as_deref(),
            to.as_deref(),
            csv,
            xlsx.as_deref(),
            &node,
        ),
        Cmd::Events { from, count, node } => query::events(mode, from.as_deref(), count, &node),
        Cmd::Inbox {
            kind,
            overdue,
            limit,
            offset,
            node,
        } => query::inbox(mode, kind, overdue, limit, offset, &node),
        Cmd::Stats { node } => query::stats(mode, &node),
        Cmd::Status { node } => query::status(mode, &node),
        Cmd::PersonKey { command } => person_key::person_key(mode, command),
        Cmd::Peers { node } => query::peers(mode, &node),
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            // Into a buffer first, written as every output is: a reader that stops early
            // (`credfed completions bash | head`) ends it quietly (clap_complete panics
            // on a closed pipe when it writes to stdout itself).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "credfed", &mut script);
            let _ = std::io::stdout().lock().write_all(&script);
            Ok(())
        }
    }
}

/// This computer's clock.
pub fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    )
}

pub fn public_key_arg(text: &str, secret_file_allowed: bool) -> Result<PublicKey, Failure> {
    if let Ok(k) = PublicKey::from_hex(text.trim()) {
        return Ok(k);
    }
    let path = Path::new(text);
    // A `.pub` file holds a public key (what `credfed key gen` writes beside the key).
    if path.extension().is_some_and(|e| e == "pub") {
        let content = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        return PublicKey::from_hex(content.trim()).map_err(|e| {
            invalid(format!(
                "{}: not a public key ({e}); expected the 64 hex digits `credfed key gen` wrote",
                path.display()
            ))
        });
    }
    if !secret_file_allowed {
        return Err(invalid(format!(
            "{}: a key file holds a secret key, which never leaves its owner: give the public key instead — the .pub file `credfed key gen` wrote beside it, or the hex `credfed key show` prints",
            path.display()
        )));
    }
    Ok(read_key(path)?.public())
}

/// A manifest file as either a signed manifest or a draft (its contents only: whoever
/// signed it is not checked here).
pub fn read_any_manifest(p: &Path) -> Result<Manifest, Failure> {
    let text = std::fs::read_to_string(p).map_err(|e| invalid(format!("{}: {e}", p.display())))?;
    match serde_json::from_str::<SignedManifest>(&text) {
        Ok(sm) => credfed_protocol::codec::decode(
            &sm.manifest,
            credfed_protocol::limits::MAX_MANIFEST_BYTES,
            "manifest",
        )
        .map_err(|e| invalid(format!("{}: {e}", p.display()))),
        Err(_) => read_draft(p),
    }
}

pub fn read_draft(p: &Path) -> Result<Manifest, Failure> {
    let t = std::fs::read_to_string(p).map_err(|e| invalid(format!("{}: {e}", p.display())))?;
    serde_json::from_str(&t)
        .map_err(|e| invalid(format!("{}: not a manifest draft: {e}", p.display())))
}

fn write_json(p: &Path, v: &impl serde::Serialize) -> Res {
    std::fs::write(
        p,
        serde_json::to_string_pretty(v).map_err(|e| invalid(e.to_string()))?,
    )
    .map_err(|e| invalid(format!("{}: {e}", p.display())))
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    /// A department's registration takes a public key (hex or `.pub`), never a secret
    /// key file; the authority's own tools may read its key file.
    #[test]
    fn a_secret_key_file_is_not_taken_for_a_public_key() {
        let dir = std::env::temp_dir().join(format!("credfed-pub-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k = Keypair::from_secret([5; 32]);
        let secret = dir.join("dept.key");
        let public = dir.join("dept.key.pub");
        std::fs::write(&secret, hex::encode(k.secret_bytes())).unwrap();
        std::fs::write(&public, format!("{}\n", k.public().to_hex())).unwrap();
        let e = public_key_arg(secret.to_str().unwrap(), false).unwrap_err();
        assert!(e.message.contains("secret key"), "{}", e.message);
        assert_eq!(
            public_key_arg(public.to_str().unwrap(), false).unwrap(),
            k.public()
        );
        assert_eq!(
            public_key_arg(&k.public().to_hex(), false).unwrap(),
            k.public()
        );
        assert_eq!(
            public_key_arg(secret.to_str().unwrap(), true).unwrap(),
            k.public()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn answer(status: u16, code: &str) -> ApiResponse {
        ApiResponse {
            status,
            body: serde_json::json!({"code": code, "field": null, "message": "m"}).to_string(),
        }
    }

    /// A refusal's hint follows its code: a read refused for want of a quorum is not
    /// "cannot write", a certificate refused is not a signing key's fault.
    #[test]
    fn refusal_hints_follow_the_error_code() {
        let hint = |status, code| refused(&answer(status, code)).message;
        assert!(hint(503, "writes_paused").contains("cannot write"));
        assert!(!hint(503, "no_quorum").contains("cannot write"));
        assert!(hint(503, "no_quorum").contains("without proofs"));
        assert!(!hint(503, "audit_unavailable").contains("cannot write right now"));
        assert!(hint(401, "unknown_client_certificate").contains("--cert"));
        assert!(!hint(401, "unknown_client_certificate").contains("--key the key"));
        assert!(hint(401, "bad_signature").contains("--key"));
    }
}
