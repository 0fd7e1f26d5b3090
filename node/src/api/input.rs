//! Request inputs, checked in two steps that match the OpenAPI document
//! (docs/openapi.json):
//!
//! * the **shape** the document gives (length, characters, enumerations): an input that
//!   does not have it is not what the API accepts at all, 400;
//! * the **rules** beyond the shape that a schema cannot state (check characters, known
//!   regions, dates of birth, signatures, the policy data): a well-formed input that
//!   breaks one is 422, naming the field and the rule.
//!
//! So a client generating inputs from the document never gets a 400 for a schema-valid
//! request, and the two statuses tell a careless client apart from a wrong one.

use credfed_protocol::catalogue::MeasureDomain;
use credfed_protocol::crypto::Hash256;
use credfed_protocol::ids::{DepartmentId, RegionCode, resident_id, uscc};

use super::ApiError;

/// Longest unit part of a department id (`REGION:UNIT`).
const UNIT_MAX: usize = credfed_protocol::ids::department::MAX_UNIT_CODE_BYTES;

/// Longest person name `POST /v1/persons/refs` takes, in characters: names on decision
/// documents are short, and 512 of them must fit the default request body limit.
pub const PERSON_NAME_MAX_CHARS: usize = 100;

impl ApiError {
    /// 422: `field` has the documented shape but breaks the rule the message names.
    pub fn unprocessable(field: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError::with_status_field(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            field,
            message,
        )
    }
}

fn shape(field: &str, ok: bool, what: &str) -> Result<(), ApiError> {
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("{field}: expected {what}"),
        ))
    }
}

/// A Unified Social Credit Code: 18 ASCII letters or digits (upper-cased here), then
/// GB 32100-2015's structure. The check character is left to the caller: an exempted
/// pilot code may fail it.
pub fn uscc_code(field: &'static str, text: &str) -> Result<String, ApiError> {
    shape(
        field,
        text.len() == 18 && text.bytes().all(|b| b.is_ascii_alphanumeric()),
        "18 letters or digits (GB 32100-2015)",
    )?;
    let code = text.to_ascii_uppercase();
    uscc::validate_structure(&code, field).map_err(|e| ApiError::unprocessable(field, e))?;
    Ok(code)
}

/// A resident identity number: 17 digits and a digit or X, then GB 11643-1999's rules.
pub fn resident_number(field: &str, text: &str) -> Result<String, ApiError> {
    let b = text.as_bytes();
    shape(
        field,
        b.len() == 18
            && b[..17].iter().all(u8::is_ascii_digit)
            && (b[17].is_ascii_digit() || b[17] == b'X' || b[17] == b'x'),
        "17 digits and a digit or X (GB 11643-1999)",
    )?;
    let n = resident_id::normalise(text);
    resident_id::validate(&n, "number").map_err(|e| {
        ApiError::unprocessable(
            field,
            format!("{field}: {}", e.to_string().trim_start_matches("number: ")),
        )
    })?;
    Ok(n)
}

/// A region code: six digits, then GB/T 2260.
pub fn region_code(field: &'static str, text: &str) -> Result<RegionCode, ApiError> {
    shape(
        field,
        text.len() == 6 && text.bytes().all(|b| b.is_ascii_digit()),
        "six digits (GB/T 2260)",
    )?;
    RegionCode::parse(text, field).map_err(|e| ApiError::unprocessable(field, e))
}

/// A department id `REGION:UNIT`: six digits, a colon, 1 to 32 of `a-z 0-9 -`.
pub fn department_id(field: &'static str, text: &str) -> Result<DepartmentId, ApiError> {
    let ok = text.split_once(':').is_some_and(|(r, u)| {
        r.len() == 6
            && r.bytes().all(|b| b.is_ascii_digit())
            && (1..=UNIT_MAX).contains(&u.len())
            && u.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    shape(
        field,
        ok,
        "REGION:UNIT (six digits, a colon, 1 to 32 of a-z, 0-9, -)",
    )?;
    DepartmentId::parse(text, field).map_err(|e| ApiError::unprocessable(field, e))
}

/// A record id: 64 hex digits.
pub fn record_id(field: &str, text: &str) -> Result<Hash256, ApiError> {
    shape(
        field,
        text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()),
        "64 hex digits",
    )?;
    Hash256::from_hex(&text.to_ascii_lowercase())
        .map_err(|e| ApiError::invalid(field, format!("{field}: {e}")))
}

/// A measure domain by name.
pub fn domain(text: &str) -> Result<MeasureDomain, ApiError> {
    MeasureDomain::parse(text).ok_or_else(|| {
        let names: Vec<String> = MeasureDomain::ALL.iter().map(|d| d.name()).collect();
        ApiError::invalid(
            "domain",
            format!("domain: '{text}' is not one of {}", names.join(", ")),
        )
    })
}

/// Hex of even length, at most `max_bytes` bytes once decoded (413 beyond).
pub fn hex_bytes(field: &str, text: &str, max_bytes: usize) -> Result<Vec<u8>, ApiError> {
    shape(
        field,
        text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()),
        "hex digits, two per byte",
    )?;
    if text.len() / 2 > max_bytes {
        return Err(ApiError::too_large(
            field,
            format!("{field}: {} bytes exceeds {max_bytes}", text.len() / 2),
        ));
    }
    hex::decode(text).map_err(|e| ApiError::invalid(field, format!("{field}: {e}")))
}

/// White space as the document's patterns mean it (ECMA-262 `\s`, which JSON Schema
/// uses): not quite Unicode's (U+0085 is not in it, U+FEFF is).
fn schema_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// A person's name as `POST /v1/persons/refs` takes it: 1 to [`PERSON_NAME_MAX_CHARS`]
/// characters, not all white space (pattern `\S`); returned without surrounding space.
pub fn person_name(field: &str, text: &str) -> Result<String, ApiError> {
    let n = text.chars().count();
    shape(
        field,
        (1..=PERSON_NAME_MAX_CHARS).contains(&n) && text.chars().any(|c| !schema_space(c)),
        "1 to 100 characters, not all white space",
    )?;
    Ok(text.trim_matches(schema_space).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shape failures are 400, rule failures 422, each naming the field.
    #[test]
    fn shape_is_400_and_rules_are_422() {
        let status = |r: Result<String, ApiError>| {
            r.map_err(|e| (e.status().as_u16(), e.message().to_owned()))
        };
        assert_eq!(
            status(uscc_code("uscc", "91350100m000100y43")).unwrap(),
            "91350100M000100Y43"
        );
        let (s, m) = status(uscc_code("uscc", "91350100M000100Y4")).unwrap_err();
        assert_eq!(s, 400, "{m}");
        let (s, m) = status(uscc_code("uscc", "Z1350100M000100Y43")).unwrap_err();
        assert_eq!(s, 422, "{m}");
        assert!(m.starts_with("uscc: "), "{m}");
        let (s, _) = status(resident_number("person", "1101051949123100")).unwrap_err();
        assert_eq!(s, 400);
        let (s, m) =
            status(resident_number("persons[3].number", "110105194912310021")).unwrap_err();
        assert_eq!(s, 422);
        assert!(
            m.starts_with("persons[3].number: ") && m.contains("GB 11643-1999"),
            "{m}"
        );
        assert_eq!(
            region_code("region", "31000")
                .unwrap_err()
                .status()
                .as_u16(),
            400
        );
        assert_eq!(
            region_code("region", "990000")
                .unwrap_err()
                .status()
                .as_u16(),
            422
        );
        assert_eq!(
            department_id("id", "310000:Pub")
                .unwrap_err()
                .status()
                .as_u16(),
            400
        );
        assert_eq!(
            department_id("id", "990000:pub")
                .unwrap_err()
                .status()
                .as_u16(),
            422
        );
        assert!(department_id("id", "310000:pub").is_ok());
        assert_eq!(record_id("id", "xyz").unwrap_err().status().as_u16(), 400);
        assert_eq!(
            hex_bytes("body", "abc", 10).unwrap_err().status().as_u16(),
            400
        );
        assert_eq!(
            hex_bytes("body", &"00".repeat(11), 10)
                .unwrap_err()
                .status()
                .as_u16(),
            413
        );
        assert_eq!(
            person_name("name", "   ").unwrap_err().status().as_u16(),
            400
        );
        assert_eq!(person_name("name", " 张三 ").unwrap(), "张三");
        // U+0085 is Unicode white space but not the schema's: a name of it is a name.
        assert_eq!(person_name("name", "\u{85}").unwrap(), "\u{85}");
        assert_eq!(
            person_name("name", "\u{3000}\u{feff}")
                .unwrap_err()
                .status()
                .as_u16(),
            400
        );
        assert_eq!(
            person_name("name", &"名".repeat(101))
                .unwrap_err()
                .status()
                .as_u16(),
            400
        );
    }
}
