//! The measures catalogue where people look: `credfed measures list` and `doc`.

use credfed_protocol::catalogue::{Bearer, MeasureDomain, MeasureFilter, snake_name};

use super::*;

/// The catalogue of `manifest`, or the embedded one, and a phrase naming which.
fn catalogue_of(manifest: Option<&Path>) -> Result<(Catalogue, String), Failure> {
    match manifest {
        Some(p) => {
            let m = read_any_manifest(p)?;
            let c = m
                .parse_catalogue()
                .map_err(|e| invalid(format!("{}: {e}", p.display())))?;
            Ok((
                c,
                format!(
                    "the catalogue of manifest {} v{} ({})",
                    m.federation_id,
                    m.version,
                    p.display()
                ),
            ))
        }
        None => Ok((
            Catalogue::embedded().map_err(|e| invalid(e.to_string()))?,
            credfed_protocol::measures_doc::EMBEDDED_SOURCE.to_string(),
        )),
    }
}

pub fn measures(mode: Output, cmd: MeasuresCmd) -> Res {
    match cmd {
        MeasuresCmd::Doc { manifest } => {
            let (c, source) = catalogue_of(manifest.as_deref())?;
            let doc = credfed_protocol::measures_doc::render(&c, &source);
            emit(mode, &json!({"markdown": doc}), || {
                doc.trim_end().to_string()
            });
            Ok(())
        }
        MeasuresCmd::List {
            kind,
            domain,
            bearer,
            group,
            mandatory,
            recommended,
            manifest,
        } => {
            let filter = MeasureFilter {
                kind: kind.map(|k| match k {
                    MeasureKindArg::Incentive => ActionKind::Incentive,
                    MeasureKindArg::Punishment => ActionKind::Punishment,
                }),
                domain: domain
                    .map(|d| {
                        MeasureDomain::parse(&d).ok_or_else(|| {
                            invalid(format!(
                                "--domain: '{d}' is not a domain; the domains are {}",
                                MeasureDomain::ALL
                                    .iter()
                                    .map(|d| d.name())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })
                    })
                    .transpose()?,
                bearer: bearer
                    .map(|b| {
                        Bearer::parse(&b).ok_or_else(|| {
                            invalid(format!(
                                "--bearer: '{b}' is not a bearer; the bearers are {}",
                                Bearer::all_names()
                            ))
                        })
                    })
                    .transpose()?,
                group: group
                    .map(|g| {
                        if (1..=4).contains(&g) {
                            Ok(g)
                        } else {
                            Err(invalid(format!(
                                "--group: {g} is not a group of article 九 (1 health and safety, 2 market order, 3 refusing a judgment or decision, 4 national defence)"
                            )))
                        }
                    })
                    .transpose()?,
                mandatory: match (mandatory, recommended) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            };
            let (c, source) = catalogue_of(manifest.as_deref())?;
            let hits: Vec<_> = c.measures.iter().filter(|m| m.matches(&filter)).collect();
            let v = json!({
                "catalogue_version": c.version,
                "source": source,
                "measures": hits,
            });
            emit(mode, &v, || {
                let rows: Vec<Vec<String>> = hits
                    .iter()
                    .map(|m| {
                        let mut on: Vec<String> = m.subjects.iter().map(snake_name).collect();
                        on.extend(m.related_roles.iter().map(snake_name));
                        vec![
                            m.code.0.clone(),
                            snake_name(&m.kind),
                            if m.mandatory {
                                if m.mandatory_only_for.is_empty() {
                                    "mandatory".into()
                                } else {
                                    "mandatory (some categories)".into()
                                }
                            } else {
                                "recommended".into()
                            },
                            m.domains
                                .iter()
                                .map(snake_name)
                                .collect::<Vec<_>>()
                                .join(","),
                            on.join(","),
                            m.guidance_article.clone(),
                            m.title_zh.clone(),
                        ]
                    })
                    .collect();
                format!(
                    "{} of {} measures, catalogue v{}, from {source}; details: --output json or docs/measures.md\n{}",
                    hits.len(),
                    c.measures.len(),
                    c.version,
                    table(
                        &[
                            "code", "kind", "force", "domains", "falls on", "article", "title"
                        ],
                        &rows
                    )
                )
            });
            Ok(())
        }
    }
}
