//! The measures catalogue as a document people read (`docs/measures.md`, and
//! `credfed measures doc` for a federation's own catalogue): every measure with the
//! domains it bites in, on whom it falls, which entries it serves, whether it is
//! mandatory and what it rests on; then the listing periods and evaluation schemes.
//!
//! Generated, never written by hand: a test compares `docs/measures.md` with the
//! rendering of the embedded catalogue, so the page people are sent to by a refused
//! measure cannot drift from the rules admission applies.

use std::fmt::Write;

use crate::catalogue::{Catalogue, Measure, snake_name};
use crate::record::ActionKind;

/// How `docs/measures.md` names its source: the catalogue this build embeds.
pub const EMBEDDED_SOURCE: &str =
    "`protocol/data/measures.toml` (the catalogue this build embeds for new manifests)";

/// A table cell: pipes and line breaks would break the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn list<T: serde::Serialize>(items: &[T], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items
            .iter()
            .map(|i| format!("`{}`", snake_name(i)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// On whom a measure falls, as a cell.
fn falls_on(m: &Measure) -> String {
    let mut parts: Vec<String> = m
        .subjects
        .iter()
        .map(|k| format!("`{}`", snake_name(k)))
        .collect();
    parts.extend(
        m.related_roles
            .iter()
            .map(|r| format!("`{}` ({})", snake_name(r), r.name_zh())),
    );
    parts.join(", ")
}

/// Which entries a measure serves, as a cell.
fn serves(m: &Measure) -> String {
    let mut parts = Vec::new();
    match m.kind {
        ActionKind::Incentive => parts.push(format!(
            "red sources: {}",
            list(&m.red_sources, "all (article 三)")
        )),
        ActionKind::Punishment => {
            let groups = if m.groups.is_empty() {
                "all".to_string()
            } else {
                m.groups
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            parts.push(format!("groups (article 九): {groups}"));
            if !m.categories.is_empty() {
                parts.push(format!("categories: {}", list(&m.categories, "")));
            }
        }
    }
    if !m.findings.is_empty() {
        parts.push(format!("findings required: {}", list(&m.findings, "")));
    }
    parts.join("; ")
}

fn mandatory(m: &Measure) -> String {
    match (m.mandatory, m.mandatory_only_for.is_empty()) {
        (false, _) => "recommended".into(),
        (true, true) => "**mandatory**".into(),
        (true, false) => format!(
            "**mandatory** for {}; recommended otherwise",
            list(&m.mandatory_only_for, "")
        ),
    }
}

fn basis(m: &Measure) -> String {
    m.legal_basis
        .iter()
        .map(|b| format!("{} {}", b.source, b.article))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The catalogue as Markdown. `source` names where it was read from (a file or a
/// manifest), for the page's first lines.
pub fn render(catalogue: &Catalogue, source: &str) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# Measures catalogue (措施清单)\n\n\
         Generated from {source}, catalogue version {}, by `credfed measures doc`: do not \
         edit by hand (a test compares this page with the catalogue). A federation's own \
         catalogue is the one in its signed manifest: `credfed measures list --manifest \
         FILE` shows it, filtered by `--domain`, `--bearer`, `--group`, `--kind` or \
         `--mandatory`.\n\n\
         A measure applies to an entry only where every column below allows it: its kind \
         matches the list (incentives rest on red-list entries, punishments on black-list \
         ones), it falls on the entry's subject or on a related person in a role named \
         (article 十四), it serves the entry's group or category and the entry states \
         the findings it requires. Mandatory (强制性) means a statute or judicial \
         interpretation makes it compulsory; everything else is recommended (推荐性). \
         docs/policy.md explains the rules; admission refuses a measure that does not \
         apply, naming the rule and these sources.",
        catalogue.version
    );
    for (kind, title) in [
        (
            ActionKind::Punishment,
            "Punishments (失信联合惩戒, articles 十–十二)",
        ),
        (
            ActionKind::Incentive,
            "Incentives (守信联合激励, articles 四–八)",
        ),
    ] {
        let _ = writeln!(
            out,
            "\n## {title}\n\n\
             | code | measure | domains | falls on | serves | mandatory | guidance | legal basis | executor |\n\
             |---|---|---|---|---|---|---|---|---|"
        );
        for m in catalogue.measures.iter().filter(|m| m.kind == kind) {
            let _ = writeln!(
                out,
                "| `{}` | {}<br>{} | {} | {} | {} | {} | {} | {} | {} |",
                m.code.0,
                cell(&m.title_zh),
                cell(&m.title_en),
                list(&m.domains, ""),
                falls_on(m),
                serves(m),
                mandatory(m),
                cell(&m.guidance_article),
                cell(&basis(m)),
                cell(&m.executor),
            );
        }
    }
    let periods = &catalogue.listing_periods;
    let _ = writeln!(
        out,
        "\n## Listing periods (惩戒期限, articles 十九, 二十一)\n\n\
         | categories | longest listing | source |\n|---|---|---|\n\
         | every other black-list category | {} days | {} |",
        periods.default_max_days,
        cell(&periods.default_basis)
    );
    for o in &periods.overrides {
        let _ = writeln!(
            out,
            "| {} | {} days | {} |",
            list(&o.categories, ""),
            o.max_days,
            cell(&o.basis)
        );
    }
    for o in &periods.open_ended {
        let _ = writeln!(
            out,
            "| {} stating {} | no fixed term: listed until the issuer ends it (repair, revocation) | {} |",
            list(&o.categories, ""),
            list(&o.findings, ""),
            cell(&o.basis)
        );
    }
    match &catalogue.repair {
        Some(r) => {
            let _ = writeln!(
                out,
                "\n## Credit repair on application (信用修复, articles 十八, 二十一)\n\n\
                 A subject may apply once its entry has been in force for the least period \
                 below; the issuing region decides within {} working days ({}).\n\n\
                 | categories | least period before applying | source |\n|---|---|---|\n\
                 | every other black-list category | {} days | {} |",
                r.decision_working_days,
                cell(&r.decision_basis),
                r.default_min_days,
                cell(&r.default_basis)
            );
            for o in &r.overrides {
                let _ = writeln!(
                    out,
                    "| {} | {} days | {} |",
                    list(&o.categories, ""),
                    o.min_days,
                    cell(&o.basis)
                );
            }
        }
        None => {
            let _ = writeln!(
                out,
                "\n## Credit repair on application (信用修复, articles 十八, 二十一)\n\n\
                 This version sets no repair periods: no application is taken."
            );
        }
    }
    let _ = writeln!(
        out,
        "\n## Evaluation schemes (信用评价、分类监管, articles 六, 十六)"
    );
    for s in &catalogue.schemes {
        let grades = if s.subjects.is_empty() {
            String::new()
        } else {
            format!(
                " Grades {} only ({}).",
                list(&s.subjects, ""),
                s.subjects_basis
            )
        };
        let _ = writeln!(
            out,
            "\n### `{}`: {}\n\nRun by {}; rules: {}.{grades}\n\n| class | meaning | measures |\n|---|---|---|",
            s.id,
            cell(&s.name_zh),
            cell(&s.owner),
            cell(&s.basis)
        );
        for c in &s.classes {
            let measures = c
                .measures
                .iter()
                .map(|m| format!("`{}`", m.0))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                c.class,
                cell(&c.meaning_zh),
                if measures.is_empty() {
                    "—".into()
                } else {
                    measures
                }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Bearer, MeasureDomain, MeasureFilter, SubjectKind};
    use crate::record::RelatedRole;

    /// The page a refused measure points people to is the catalogue admission applies.
    #[test]
    fn docs_measures_md_is_the_embedded_catalogue() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/measures.md");
        let held = std::fs::read_to_string(path).unwrap_or_default();
        let rendered = render(&Catalogue::embedded().unwrap(), EMBEDDED_SOURCE);
        assert!(
            held.trim_end() == rendered.trim_end(),
            "docs/measures.md differs from the embedded catalogue: regenerate it with \
             `cargo run -p credfed -- measures doc > docs/measures.md`"
        );
    }

    #[test]
    fn every_measure_appears_once_with_its_sources() {
        let c = Catalogue::embedded().unwrap();
        let doc = render(&c, "x");
        for m in &c.measures {
            let row = format!("| `{}` |", m.code.0);
            assert_eq!(
                doc.lines().filter(|l| l.starts_with(&row)).count(),
                1,
                "{}",
                m.code.0
            );
            for b in &m.legal_basis {
                assert!(doc.contains(&cell(&b.source)), "{}: {}", m.code.0, b.source);
            }
        }
    }

    /// 法释〔2015〕17号 第三条: for an organisation, the consumption restrictions fall
    /// on its legal representative and the other roles named, not on the organisation
    /// itself; the filter must agree with `falls_on`.
    #[test]
    fn filter_by_bearer_follows_the_roles_article_14_names() {
        let c = Catalogue::embedded().unwrap();
        let f = MeasureFilter {
            bearer: Some(Bearer::Related(RelatedRole::LegalRepresentative)),
            domain: Some(MeasureDomain::Travel),
            ..MeasureFilter::default()
        };
        let hits: Vec<_> = c.measures.iter().filter(|m| m.matches(&f)).collect();
        assert!(!hits.is_empty());
        assert!(
            hits.iter()
                .all(|m| m.related_roles.contains(&RelatedRole::LegalRepresentative))
        );
        let org = MeasureFilter {
            bearer: Some(Bearer::Subject(SubjectKind::Organisation)),
            domain: Some(MeasureDomain::Travel),
            ..MeasureFilter::default()
        };
        assert!(
            c.measures
                .iter()
                .filter(|m| m.matches(&org))
                .all(|m| m.subjects.contains(&SubjectKind::Organisation))
        );
    }

    #[test]
    fn a_group_filter_never_lists_an_incentive() {
        let c = Catalogue::embedded().unwrap();
        for g in 1..=4 {
            let f = MeasureFilter {
                group: Some(g),
                ..MeasureFilter::default()
            };
            assert!(
                c.measures
                    .iter()
                    .filter(|m| m.matches(&f))
                    .all(|m| m.kind == ActionKind::Punishment)
            );
        }
        let none = MeasureFilter {
            group: Some(9),
            ..MeasureFilter::default()
        };
        assert_eq!(c.measures.iter().filter(|m| m.matches(&none)).count(), 0);
    }

    #[test]
    fn bearer_names_round_trip() {
        for name in Bearer::all_names().split(", ") {
            assert_eq!(Bearer::parse(name).unwrap().name(), name);
        }
        assert!(Bearer::parse("company").is_none());
    }
}
