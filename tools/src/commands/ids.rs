//! Identifier checks, offline.

use super::*;

pub fn id_check(mode: Output, codes: &[String], kind: Option<IdKind>) -> Res {
    let mut results = Vec::new();
    let mut all_ok = true;
    for code in codes {
        let c = code.trim().to_ascii_uppercase();
        // 17 digits with a birth date in positions 7-14 is a resident identity number;
        // anything else is treated as a USCC.
        let looks_like_person = c.len() == 18
            && c.is_ascii()
            && c[..17].bytes().all(|b| b.is_ascii_digit())
            && Date::parse(&format!("{}-{}-{}", &c[6..10], &c[10..12], &c[12..14])).is_ok();
        let k = kind.unwrap_or(if looks_like_person {
            IdKind::Person
        } else {
            IdKind::Uscc
        });
        let (rule, expected) = match k {
            IdKind::Uscc => match uscc::validate(&c, "code") {
                Ok(()) => (None, None),
                Err(e) => {
                    let exp = if c.len() == 18 {
                        uscc::check_character(&c.as_bytes()[..17])
                    } else {
                        None
                    };
                    (Some(e.to_string()), exp)
                }
            },
            IdKind::Person => match resident_id::validate(&c, "code") {
                Ok(()) => (None, None),
                Err(e) => (
                    Some(e.to_string()),
                    if c.len() == 18 {
                        resident_id::check_character(&c.as_bytes()[..17])
                    } else {
                        None
                    },
                ),
            },
        };
        all_ok &= rule.is_none();
        results.push(json!({"code": code, "kind": format!("{k:?}").to_lowercase(), "valid": rule.is_none(), "rule": rule, "expected_check_character": expected.map(|c| c.to_string())}));
    }
    let v = json!(results);
    emit(mode, &v, || {
        table(
            &["code", "kind", "valid", "rule"],
            &results
                .iter()
                .map(|r| {
                    vec![
                        s(&r["code"]),
                        s(&r["kind"]),
                        if r["valid"] == json!(true) {
                            "valid".into()
                        } else {
                            "INVALID".into()
                        },
                        s(&r["rule"]),
                    ]
                })
                .collect::<Vec<_>>(),
        )
    });
    if all_ok {
        Ok(())
    } else {
        Err(Failure::new(
            exit::INVALID,
            format!(
                "{} of {} codes are invalid",
                results
                    .iter()
                    .filter(|r| r["valid"] == json!(false))
                    .count(),
                results.len()
            ),
        ))
    }
}
