//! What each command does.

use std::path::Path;

use credfed_node::client::{ApiClient, ApiResponse};
use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::check::{CheckAnswer, verify_answer};
use credfed_protocol::crypto::{Keypair, PublicKey};
use credfed_protocol::envelope::sign_body;
use credfed_protocol::ids::{DepartmentId, RegionCode, Role, resident_id, uscc};
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
    ApiClient::with_identity(&n.node, &n.ca, &n.cert, &n.cert_key).map_err(|e| {
        invalid(format!(
            "{e:#}; check --ca, --cert and --cert-key (CREDFED_CA, CREDFED_CERT, CREDFED_CERT_KEY)"
        ))
    })
}

/// Sends a request, mapping "cannot connect" to exit code 3 with the address tried and
/// an error status to exit code 1 with the node's message.
pub async fn call(
    c: &ApiClient,
    n: &NodeArgs,
    req: impl std::future::Future<Output = anyhow::Result<ApiResponse>>,
) -> Result<ApiResponse, Failure> {
    let _ = c;
    let r = req.await.map_err(|e| {
        Failure::new(
            exit::UNREACHABLE,
            format!("cannot reach the node at {} ({e:#}). Is it running? Start it with `credfed-node run --config <data-dir>/config.toml`, or point --node / CREDFED_NODE at the right address", n.node),
        )
    })?;
    if r.status >= 400 {
        return Err(refused(&r));
    }
    Ok(r)
}

fn refused(r: &ApiResponse) -> Failure {
    let msg = r
        .json()
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| r.body.clone());
    let hint = match r.status {
        401 => " (is the department registered, and is --key the key it was registered with?)",
        403 => {
            " (does the department hold the role, and is it a department of this node's region?)"
        }
        409 => " (already recorded, or the record's state forbids it)",
        503 => " (the node cannot write right now; retry shortly)",
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
    credfed_node::config::read_key(path).map_err(|e| invalid(format!("{e:#}")))
}

/// Signs `body` as `sign.author` and submits it (or prints it with --dry-run).
pub fn sign_and_submit(mode: Output, sign: &SignArgs, node: &NodeArgs, body: &Body) -> Res {
    body.validate().map_err(|e| invalid(format!("body.{e}")))?;
    let author =
        DepartmentId::parse(&sign.author, "--author").map_err(|e| invalid(e.to_string()))?;
    let fed = federation_id(&sign.manifest)?;
    let key = read_key(&sign.key)?;
    let (bytes, sig) = sign_body(&fed, &key, body);
    let req = json!({"author": author.to_string(), "body": hex::encode(&bytes), "signature": sig.to_hex()});
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
    let r = runtime()?.block_on(async { call(&c, node, c.post("/v1/records", &req)).await })?;
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

fn hash_id(text: &str, field: &str) -> Result<credfed_protocol::crypto::Hash256, Failure> {
    credfed_protocol::crypto::Hash256::from_hex(text).map_err(|e| invalid(format!("{field}: {e}")))
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

pub fn entry_from_fields(f: &EntryFields) -> Result<ListEntry, Failure> {
    let decided_on = date(&f.decided_on, "--decided-on")?;
    Ok(ListEntry {
        category: category(&f.list, &f.category)?,
        subject: Subject::Organisation {
            uscc: f.uscc.trim().to_ascii_uppercase(),
            name: f.name.clone(),
            check_exemption: f
                .check_exemption
                .clone()
                .map(|reason| CheckExemption { reason }),
        },
        related_persons: vec![],
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
        summary: f.summary.clone(),
    })
}

fn get_json(node: &NodeArgs, path: &str) -> Result<Value, Failure> {
    let c = client(node)?;
    let r = runtime()?.block_on(async { call(&c, node, c.get(path)).await })?;
    r.json().map_err(|e| invalid(e.to_string()))
}

pub fn run(cli: Cli) -> Res {
    let mode = cli.output;
    match cli.command {
        Cmd::Id {
            command: IdCmd::Check { codes, kind },
        } => id_check(mode, &codes, kind),
        Cmd::Key { command } => key(mode, command),
        Cmd::Federation { command } => federation(mode, command),
        Cmd::Dept { command } => match command {
            DeptCmd::Register {
                department,
                name,
                roles,
                public_key,
                sign,
                node,
            } => {
                let department = DepartmentId::parse(&department, "--department")
                    .map_err(|e| invalid(e.to_string()))?;
                let mut rs: Vec<Role> = roles
                    .iter()
                    .map(|r| {
                        choice(
                            r.trim(),
                            "--roles",
                            "publisher, initiator, implementer, objection_handler, operator",
                        )
                    })
                    .collect::<Result<_, _>>()?;
                rs.sort();
                rs.dedup();
                let key = public_key_arg(&public_key)?;
                sign_and_submit(
                    mode,
                    &sign,
                    &node,
                    &Body::DepartmentRegistered {
                        department,
                        name,
                        roles: rs,
                        key,
                    },
                )
            }
            DeptCmd::Revoke {
                department,
                reason,
                sign,
                node,
            } => {
                let department = DepartmentId::parse(&department, "--department")
                    .map_err(|e| invalid(e.to_string()))?;
                sign_and_submit(
                    mode,
                    &sign,
                    &node,
                    &Body::DepartmentRevoked { department, reason },
                )
            }
            DeptCmd::List { region, node } => {
                let path = match &region {
                    Some(r) => format!("/v1/departments?region={r}"),
                    None => "/v1/departments".to_string(),
                };
                let v = get_json(&node, &path)?;
                emit(mode, &v, || {
                    let rows: Vec<Vec<String>> = v
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|d| {
                            let id = format!(
                                "{}:{}",
                                s(&d["department"]["region"]),
                                s(&d["department"]["unit"])
                            );
                            vec![
                                id,
                                s(&d["name"]),
                                s(&d["roles"]),
                                if d["revoked_at"].is_null() {
                                    "".into()
                                } else {
                                    "revoked".into()
                                },
                            ]
                        })
                        .collect();
                    table(&["department", "name", "roles", ""], &rows)
                });
                Ok(())
            }
            DeptCmd::Show { department, node } => {
                let v = get_json(&node, &format!("/v1/departments/{department}"))?;
                emit(mode, &v, || {
                    table(
                        &["department", "name", "roles", "key", "revoked"],
                        &[vec![
                            department.clone(),
                            s(&v["name"]),
                            s(&v["roles"]),
                            s(&v["key"]),
                            if v["revoked_at"].is_null() {
                                "no".into()
                            } else {
                                "yes".into()
                            },
                        ]],
                    )
                });
                Ok(())
            }
        },
        Cmd::Entry { command } => match command {
            EntryCmd::Publish { fields, sign, node } => sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::ListEntryPublished(entry_from_fields(&fields)?),
            ),
            EntryCmd::Amend {
                entry,
                file,
                reason,
                sign,
                node,
            } => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| invalid(format!("{}: {e}", file.display())))?;
                let amended: ListEntry = serde_json::from_str(&text)
                    .map_err(|e| invalid(format!("{}: not an entry: {e}", file.display())))?;
                sign_and_submit(
                    mode,
                    &sign,
                    &node,
                    &Body::ListEntryAmended {
                        entry: EntryId(hash_id(&entry, "--entry")?),
                        amended,
                        reason,
                    },
                )
            }
            EntryCmd::Revoke {
                entry,
                reason,
                sign,
                node,
            } => sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::ListEntryRevoked {
                    entry: EntryId(hash_id(&entry, "--entry")?),
                    reason,
                },
            ),
            EntryCmd::Repair {
                entry,
                basis,
                reason,
                sign,
                node,
            } => {
                let basis = choice(&basis, "--basis", "corrected_within_period, public_service")?;
                sign_and_submit(
                    mode,
                    &sign,
                    &node,
                    &Body::ListEntryRepaired {
                        entry: EntryId(hash_id(&entry, "--entry")?),
                        basis,
                        reason,
                    },
                )
            }
            EntryCmd::Show { entry, node } => {
                let v = get_json(&node, &format!("/v1/entries/{entry}"))?;
                let e = &v["entry"];
                emit(mode, &v, || {
                    table(
                        &[
                            "entry", "region", "state", "category", "subject", "document", "period",
                        ],
                        &[vec![
                            entry.chars().take(16).collect(),
                            s(&e["published"]["pos"]["region"]),
                            s(&v["state"]),
                            s(&e["content"]["category"]),
                            s(&e["content"]["subject"]["organisation"]["name"]),
                            s(&e["content"]["basis"]["document_no"]),
                            format!(
                                "{} – {}",
                                s(&e["content"]["effective_from"]),
                                s(&e["content"]["expires_on"])
                            ),
                        ]],
                    )
                });
                Ok(())
            }
        },
        Cmd::Evaluation {
            command:
                EvaluationCmd::Publish {
                    uscc,
                    name,
                    scheme,
                    class,
                    score,
                    evaluated_on,
                    valid_until,
                    sign,
                    node,
                },
        } => {
            let grade = match (class, score) {
                (Some(c), None) => {
                    let mut g = [0u8; 4];
                    for (i, b) in c.bytes().take(4).enumerate() {
                        g[i] = b;
                    }
                    Grade::Class(g)
                }
                (None, Some(s)) => Grade::Score(s),
                _ => return Err(invalid("give --class or --score")),
            };
            let ev = Evaluation {
                subject: Subject::Organisation {
                    uscc,
                    name,
                    check_exemption: None,
                },
                scheme,
                grade,
                evaluated_on: date(&evaluated_on, "--evaluated-on")?,
                valid_until: date(&valid_until, "--valid-until")?,
            };
            sign_and_submit(mode, &sign, &node, &Body::EvaluationPublished(ev))
        }
        Cmd::Action { command } => match command {
            ActionCmd::Initiate {
                entry,
                reference,
                kind,
                targets,
                measures: m,
                respond_by,
                sign,
                node,
            } => {
                let kind = match kind.as_str() {
                    "punishment" => ActionKind::Punishment,
                    "incentive" => ActionKind::Incentive,
                    o => {
                        return Err(invalid(format!(
                            "--kind: '{o}' is neither punishment nor incentive"
                        )));
                    }
                };
                let targets = if targets.len() == 1 && targets[0] == "all" {
                    Targets::AllMembers
                } else {
                    let mut t: Vec<RegionCode> = targets
                        .iter()
                        .map(|r| RegionCode::parse(r.trim(), "--targets"))
                        .collect::<Result<_, _>>()
                        .map_err(|e| invalid(e.to_string()))?;
                    t.sort();
                    t.dedup();
                    Targets::Regions(t)
                };
                let a = JointAction {
                    reference,
                    kind,
                    entry: EntryId(hash_id(&entry, "--entry")?),
                    targets,
                    measures: measures(&m),
                    respond_by: date(&respond_by, "--respond-by")?,
                };
                sign_and_submit(mode, &sign, &node, &Body::JointActionInitiated(a))
            }
            ActionCmd::Ack {
                action,
                decision,
                accepted,
                reason,
                implementing,
                sign,
                node,
            } => {
                let decision = match decision.as_str() {
                    "accepted" => AckDecision::Accepted,
                    "declined" => AckDecision::Declined { reason },
                    "partly" => AckDecision::Partly {
                        accepted: measures(&accepted),
                        reason,
                    },
                    o => {
                        return Err(invalid(format!(
                            "--decision: '{o}' is not accepted, declined or partly"
                        )));
                    }
                };
                let mut imp: Vec<DepartmentId> = implementing
                    .iter()
                    .filter(|d| !d.is_empty())
                    .map(|d| DepartmentId::parse(d.trim(), "--implementing"))
                    .collect::<Result<_, _>>()
                    .map_err(|e| invalid(e.to_string()))?;
                imp.sort();
                imp.dedup();
                sign_and_submit(
                    mode,
                    &sign,
                    &node,
                    &Body::JointActionAcknowledged {
                        action: ActionId(hash_id(&action, "--action")?),
                        decision,
                        implementing: imp,
                    },
                )
            }
            ActionCmd::Execute {
                action,
                measure,
                reference,
                executed_on,
                sign,
                node,
            } => sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::MeasureExecuted {
                    action: ActionId(hash_id(&action, "--action")?),
                    measure: MeasureCode(measure),
                    reference,
                    executed_on: date(&executed_on, "--executed-on")?,
                },
            ),
            ActionCmd::Show { action, node } => {
                let v = get_json(&node, &format!("/v1/actions/{action}"))?;
                emit(mode, &v, || {
                    let rows: Vec<Vec<String>> = v["targets"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|t| {
                            vec![
                                s(&t["region"]),
                                s(&t["status"]),
                                if t["answered_late"] == json!(true) {
                                    "late".into()
                                } else {
                                    "".into()
                                },
                                t["acknowledgement_ms"]
                                    .as_i64()
                                    .map(|m| format!("{:.1} h", m as f64 / 3.6e6))
                                    .unwrap_or("-".into()),
                                s(&t["executed"]),
                                s(&t["lifted"]),
                            ]
                        })
                        .collect();
                    format!(
                        "action {} on entry {}, respond by {}\n{}",
                        action.chars().take(16).collect::<String>(),
                        s(&v["action"]["action"]["entry"])
                            .chars()
                            .take(16)
                            .collect::<String>(),
                        s(&v["action"]["action"]["respond_by"]),
                        table(
                            &["region", "status", "", "ack after", "executed", "lifted"],
                            &rows
                        )
                    )
                });
                Ok(())
            }
        },
        Cmd::Objection { command } => match command {
            ObjectionCmd::File {
                entry,
                case_no,
                grounds,
                filed_on,
                sign,
                node,
            } => sign_and_submit(
                mode,
                &sign,
                &node,
                &Body::ObjectionFiled {
                    case_no,
                    entry: EntryId(hash_id(&entry, "--entry")?),
                    grounds,
                    filed_on: date(&filed_on, "--filed-on")?,
                },
            ),
            ObjectionCmd::Resolve {
                objection,
                outcome,
                note,
                sign,
                node,
            } => {
                let outcome = choice(&outcome, "--outcome", "upheld, corrected, revoked")?;
                sign_and_submit(
                    mode,
                    &sign,
                    &node,
                    &Body::ObjectionResolved {
                        objection: ObjectionId(hash_id(&objection, "--objection")?),
                        outcome,
                        note,
                    },
                )
            }
        },
        Cmd::Submit { file, sign, node } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| invalid(format!("{}: {e}", file.display())))?;
            let body: Body = serde_json::from_str(&text)
                .map_err(|e| invalid(format!("{}: not a record body: {e}", file.display())))?;
            sign_and_submit(mode, &sign, &node, &body)
        }
        Cmd::Import(args) => crate::import::run(mode, &args),
        Cmd::Check {
            code,
            domain,
            save,
            node,
        } => check(mode, &code, &domain, save.as_deref(), &node),
        Cmd::Verify {
            answer,
            manifest,
            authority_key,
        } => verify(mode, &answer, &manifest, authority_key.as_deref()),
        Cmd::Stats { node } => {
            let v = get_json(&node, "/v1/stats")?;
            emit(mode, &v, || {
                serde_json::to_string_pretty(&v).unwrap_or_default()
            });
            Ok(())
        }
        Cmd::Status { node } => {
            let v = get_json(&node, "/v1/status")?;
            emit(mode, &v, || {
                table(
                    &[
                        "region",
                        "own head",
                        "regions",
                        "peers",
                        "writes",
                        "equivocating",
                        "store",
                    ],
                    &[vec![
                        s(&v["region"]),
                        s(&v["own_head"]),
                        s(&v["regions_held"]),
                        format!(
                            "{}/{}",
                            s(&v["peers_connected"]),
                            v["members"].as_u64().unwrap_or(1).saturating_sub(1)
                        ),
                        if v["writes_open"] == json!(true) {
                            "open".into()
                        } else {
                            "paused".into()
                        },
                        s(&v["equivocating_regions"]),
                        format!("{} KiB", v["store_bytes"].as_u64().unwrap_or(0) / 1024),
                    ]],
                )
            });
            Ok(())
        }
        Cmd::Peers { node } => {
            let v = get_json(&node, "/v1/peers")?;
            emit(mode, &v, || {
                let rows: Vec<Vec<String>> = v["connected"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|(r, p)| vec![r.clone(), s(p), s(&v["last_contact_ms"][r])])
                    .collect();
                table(&["region", "peer id", "last contact (ms)"], &rows)
            });
            Ok(())
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "credfed",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

fn public_key_arg(text: &str) -> Result<PublicKey, Failure> {
    if let Ok(k) = PublicKey::from_hex(text.trim()) {
        return Ok(k);
    }
    Ok(read_key(Path::new(text))?.public())
}

fn id_check(mode: Output, codes: &[String], kind: Option<IdKind>) -> Res {
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

fn key(mode: Output, cmd: KeyCmd) -> Res {
    match cmd {
        KeyCmd::Gen { kind, out } => {
            let secret =
                credfed_node::config::random_secret().map_err(|e| invalid(e.to_string()))?;
            let k = Keypair::from_secret(secret);
            credfed_node::config::write_secret(&out, &hex::encode(secret))
                .map_err(|e| invalid(format!("{e:#}")))?;
            let mut v = json!({"file": out, "public_key": k.public().to_hex()});
            if kind == KeyKind::Node {
                v["peer_id"] = json!(
                    credfed_node::p2p::peer_id_of(&k.public())
                        .map(|p| p.to_string())
                        .unwrap_or_default()
                );
            }
            emit(mode, &v, || {
                format!(
                    "wrote {} (mode 0600)\npublic key {}",
                    out.display(),
                    k.public()
                )
            });
            Ok(())
        }
        KeyCmd::Show { key } => {
            let k = read_key(&key)?;
            let peer = credfed_node::p2p::peer_id_of(&k.public())
                .map(|p| p.to_string())
                .unwrap_or_default();
            let v = json!({"public_key": k.public().to_hex(), "peer_id_if_node_key": peer});
            emit(mode, &v, || {
                format!("public key {}\npeer id (if a node key) {peer}", k.public())
            });
            Ok(())
        }
    }
}

#[derive(serde::Deserialize)]
struct MembersFile {
    member: Vec<MemberRow>,
}

#[derive(serde::Deserialize)]
struct MemberRow {
    region: String,
    name: String,
    node_key: String,
    #[serde(default)]
    addresses: Vec<String>,
}

fn read_draft(p: &Path) -> Result<Manifest, Failure> {
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

fn federation(mode: Output, cmd: FederationCmd) -> Res {
    match cmd {
        FederationCmd::Init {
            members,
            federation_id,
            authority,
            valid_days,
            version,
            out,
        } => {
            let text = std::fs::read_to_string(&members)
                .map_err(|e| invalid(format!("{}: {e}", members.display())))?;
            let mf: MembersFile = toml::from_str(&text)
                .map_err(|e| invalid(format!("{}: {e}", members.display())))?;
            let mut ms = Vec::new();
            for m in mf.member {
                ms.push(Member {
                    region: RegionCode::parse(&m.region, "member.region")
                        .map_err(|e| invalid(e.to_string()))?,
                    name: m.name,
                    node_key: PublicKey::from_hex(&m.node_key)
                        .map_err(|e| invalid(format!("member.node_key: {e}")))?,
                    addresses: m.addresses,
                });
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let m = Manifest::for_build(
                federation_id,
                version,
                Timestamp(now),
                Timestamp(now + valid_days * 86_400_000),
                public_key_arg(&authority)?,
                ms,
            );
            m.validate().map_err(|e| invalid(e.to_string()))?;
            write_json(&out, &m)?;
            emit(
                mode,
                &json!({"draft": out, "members": m.members.len()}),
                || {
                    format!(
                        "wrote draft {} with {} members; sign it with `credfed federation sign`",
                        out.display(),
                        m.members.len()
                    )
                },
            );
            Ok(())
        }
        FederationCmd::AddMember {
            draft,
            region,
            name,
            node_key,
            addresses,
        } => {
            let mut m = read_draft(&draft)?;
            let region =
                RegionCode::parse(&region, "--region").map_err(|e| invalid(e.to_string()))?;
            m.members.retain(|x| x.region != region);
            m.members.push(Member {
                region,
                name,
                node_key: PublicKey::from_hex(&node_key)
                    .map_err(|e| invalid(format!("--node-key: {e}")))?,
                addresses,
            });
            m.members.sort_by_key(|x| x.region);
            m.validate().map_err(|e| invalid(e.to_string()))?;
            write_json(&draft, &m)?;
            emit(mode, &json!({"members": m.members.len()}), || {
                format!("{} now has {} members", draft.display(), m.members.len())
            });
            Ok(())
        }
        FederationCmd::RemoveMember { draft, region } => {
            let mut m = read_draft(&draft)?;
            let before = m.members.len();
            m.members.retain(|x| x.region.to_string() != region);
            if m.members.len() == before {
                return Err(invalid(format!(
                    "--region {region} is not a member of the draft"
                )));
            }
            write_json(&draft, &m)?;
            emit(mode, &json!({"members": m.members.len()}), || {
                format!("{} now has {} members", draft.display(), m.members.len())
            });
            Ok(())
        }
        FederationCmd::Sign { draft, key, out } => {
            let m = read_draft(&draft)?;
            let signed = m
                .sign(&read_key(&key)?)
                .map_err(|e| invalid(e.to_string()))?;
            write_json(&out, &signed)?;
            emit(
                mode,
                &json!({"manifest": out, "hash": signed.hash().to_hex()}),
                || {
                    format!(
                        "signed manifest v{} written to {} (hash {})",
                        m.version,
                        out.display(),
                        signed.hash()
                    )
                },
            );
            Ok(())
        }
        FederationCmd::Verify {
            manifest,
            authority_key,
        } => {
            let signed: SignedManifest = serde_json::from_str(
                &std::fs::read_to_string(&manifest).map_err(|e| invalid(e.to_string()))?,
            )
            .map_err(|e| invalid(format!("{}: {e}", manifest.display())))?;
            let key = PublicKey::from_hex(&authority_key)
                .map_err(|e| invalid(format!("--authority-key: {e}")))?;
            let now = Timestamp(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0),
            );
            let m = signed
                .verify(&key, now)
                .map_err(|e| Failure::new(exit::UNVERIFIED, e.to_string()))?;
            emit(
                mode,
                &json!({"valid": true, "federation_id": m.federation_id, "version": m.version, "members": m.members.len()}),
                || {
                    format!(
                        "valid: {} v{} with {} members",
                        m.federation_id,
                        m.version,
                        m.members.len()
                    )
                },
            );
            Ok(())
        }
        FederationCmd::Show { manifest } => {
            let text = std::fs::read_to_string(&manifest).map_err(|e| invalid(e.to_string()))?;
            let m: Manifest = match serde_json::from_str::<SignedManifest>(&text) {
                Ok(sm) => credfed_protocol::codec::decode(
                    &sm.manifest,
                    credfed_protocol::limits::MAX_MANIFEST_BYTES,
                    "manifest",
                )
                .map_err(|e| invalid(e.to_string()))?,
                Err(_) => read_draft(&manifest)?,
            };
            let v = serde_json::to_value(&m).map_err(|e| invalid(e.to_string()))?;
            emit(mode, &v, || {
                let rows: Vec<Vec<String>> = m
                    .members
                    .iter()
                    .map(|x| {
                        vec![
                            x.region.to_string(),
                            x.name.clone(),
                            x.node_key.to_hex().chars().take(16).collect(),
                            x.addresses.join(" "),
                        ]
                    })
                    .collect();
                format!(
                    "{} v{} (expires {} ms)\n{}",
                    m.federation_id,
                    m.version,
                    m.expires_at.0,
                    table(&["region", "name", "node key", "addresses"], &rows)
                )
            });
            Ok(())
        }
    }
}

fn check(mode: Output, code: &str, domain: &str, save: Option<&Path>, node: &NodeArgs) -> Res {
    let c = code.trim().to_ascii_uppercase();
    let param = if resident_id::validate(&c, "code").is_ok() {
        "person"
    } else {
        "uscc"
    };
    let v = get_json(node, &format!("/v1/check?{param}={c}&domain={domain}"))?;
    if let Some(p) = save {
        write_json(p, &v)?;
    }
    emit(mode, &v, || {
        let mut out = format!("{} in {domain}: {}\n", c, s(&v["verdict"]));
        let rows: Vec<Vec<String>> = ["mandatory", "recommended"]
            .iter()
            .flat_map(|k| {
                v[*k]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |m| {
                        vec![
                            k.to_string(),
                            s(&m["code"]),
                            s(&m["title_zh"]),
                            s(&m["region"]),
                        ]
                    })
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&table(
                &["applies", "measure", "title", "from region"],
                &rows,
            ));
            out.push('\n');
        }
        for e in v["entries"].as_array().cloned().unwrap_or_default() {
            out.push_str(&format!(
                "  entry {} {} {} ({})\n",
                s(&e["entry"]).chars().take(16).collect::<String>(),
                s(&e["state"]),
                s(&e["document_no"]),
                s(&e["region"])
            ));
        }
        let stale: Vec<String> = v["freshness"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|f| f["head_seq"] == json!(0))
            .map(|f| s(&f["region"]))
            .collect();
        if !stale.is_empty() {
            out.push_str(&format!("  no data yet from: {}\n", stale.join(" ")));
        }
        if let Some(p) = save {
            out.push_str(&format!(
                "  answer with evidence saved to {} (verify with `credfed verify`)",
                p.display()
            ));
        }
        out
    });
    Ok(())
}

fn verify(mode: Output, answer: &Path, manifest: &Path, authority_key: Option<&str>) -> Res {
    let text = std::fs::read_to_string(answer)
        .map_err(|e| invalid(format!("{}: {e}", answer.display())))?;
    let a: CheckAnswer = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("{}: not a check answer: {e}", answer.display())))?;
    let signed: SignedManifest = serde_json::from_str(
        &std::fs::read_to_string(manifest)
            .map_err(|e| invalid(format!("{}: {e}", manifest.display())))?,
    )
    .map_err(|e| invalid(format!("{}: {e}", manifest.display())))?;
    let (m, pinned) = match authority_key {
        Some(k) => {
            let key =
                PublicKey::from_hex(k).map_err(|e| invalid(format!("--authority-key: {e}")))?;
            (
                signed
                    .verify(&key, a.as_of)
                    .map_err(|e| Failure::new(exit::UNVERIFIED, e.to_string()))?,
                true,
            )
        }
        None => (
            credfed_protocol::codec::decode::<Manifest>(
                &signed.manifest,
                credfed_protocol::limits::MAX_MANIFEST_BYTES,
                "manifest",
            )
            .map_err(|e| invalid(e.to_string()))?,
            false,
        ),
    };
    let catalogue = Catalogue::embedded().map_err(|e| invalid(e.to_string()))?;
    let report = verify_answer(&a, &m, &catalogue);
    let v = json!({"ok": report.ok(), "envelopes_verified": report.envelopes_verified, "entries_confirmed": report.entries_confirmed, "failures": report.failures, "manifest_signature_checked": pinned});
    emit(mode, &v, || {
        let mut out = if report.ok() {
            format!(
                "VERIFIED: {} envelopes, {} entries confirmed against manifest {} v{}",
                report.envelopes_verified, report.entries_confirmed, m.federation_id, m.version
            )
        } else {
            format!("NOT VERIFIED:\n  {}", report.failures.join("\n  "))
        };
        if !pinned {
            out.push_str("\n(the manifest's own signature was not checked: pass --authority-key to pin the federation authority)");
        }
        out
    });
    if report.ok() {
        Ok(())
    } else {
        Err(Failure::new(
            exit::UNVERIFIED,
            format!("{} problem(s) in the answer", report.failures.len()),
        ))
    }
}
