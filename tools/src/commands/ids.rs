//! Identifier checks, offline.

use super::*;

pub fn id_check(mode: Output, codes: &[String], kind: Option<IdKind>) -> Res {
    let mut results = Vec::new();
    let mut all_ok = true;
    for code in codes {
        let d = credfed_protocol::ids::detect(code);
        let c = d.normalised.clone();
        let expected_for = |k: IdKind| {
            if c.len() != 18 || !c.is_ascii() {
                return None;
            }
            match k {
                IdKind::Uscc => uscc::check_character(&c.as_bytes()[..17]),
                IdKind::Person => resident_id::check_character(&c.as_bytes()[..17]),
            }
        };
        let result_for = |k: IdKind| {
            d.as_kind
                .iter()
                .find(|(x, _)| {
                    matches!(
                        (x, k),
                        (credfed_protocol::ids::IdentifierKind::Uscc, IdKind::Uscc)
                            | (
                                credfed_protocol::ids::IdentifierKind::ResidentId,
                                IdKind::Person
                            )
                    )
                })
                .map(|(_, r)| r.clone())
                .unwrap_or(Ok(()))
        };
        // Nothing is guessed from the shape: the code is tried as every kind, and is
        // valid if it is valid as the kind asked for, or as any kind when none is.
        let kinds: Vec<IdKind> = match kind {
            Some(k) => vec![k],
            None => vec![IdKind::Uscc, IdKind::Person],
        };
        let valid_as: Vec<IdKind> = kinds
            .iter()
            .copied()
            .filter(|k| result_for(*k).is_ok())
            .collect();
        let kind_name = |k: IdKind| match k {
            IdKind::Uscc => "uscc",
            IdKind::Person => "person",
        };
        let (valid, shown_kind, rule, expected) = if valid_as.is_empty() {
            let rules: Vec<String> = kinds.iter().filter_map(|k| result_for(*k).err()).collect();
            let expected: Vec<String> = kinds
                .iter()
                .filter_map(|k| {
                    expected_for(*k).map(|e| {
                        if kinds.len() == 1 {
                            e.to_string()
                        } else {
                            format!("{e} as {}", kind_name(*k))
                        }
                    })
                })
                .collect();
            (
                false,
                kinds
                    .iter()
                    .map(|k| kind_name(*k))
                    .collect::<Vec<_>>()
                    .join("|"),
                Some(rules.join("; ")),
                (!expected.is_empty()).then(|| expected.join(", ")),
            )
        } else {
            let names: Vec<&str> = valid_as.iter().map(|k| kind_name(*k)).collect();
            let note = (names.len() > 1)
                .then(|| "valid as both; say which with --kind where it matters".to_string());
            (true, names.join("|"), note, None)
        };
        all_ok &= valid;
        results.push(json!({"code": code, "kind": shown_kind, "valid": valid, "rule": rule, "expected_check_character": expected}));
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
