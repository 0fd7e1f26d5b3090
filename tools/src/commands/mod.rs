//! What each command does: shared helpers here, one module per group of commands.

mod federation;
mod ids;
mod query;
mod records;

use std::path::Path;

use credfed_client::{ApiClient, ApiResponse, ClientError, SubmitRecord};
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
        Cmd::Submit { file, sign, node } => records::submit_file(mode, &file, &sign, &node),
        Cmd::Import(args) => crate::import::run(mode, &args),
        Cmd::Check {
            code,
            domain,
            save,
            node,
        } => query::check(mode, &code, &domain, save.as_deref(), &node),
        Cmd::Verify {
            answer,
            manifest,
            authority_key,
        } => query::verify(mode, &answer, &manifest, authority_key.as_deref()),
        Cmd::Stats { node } => query::stats(mode, &node),
        Cmd::Status { node } => query::status(mode, &node),
        Cmd::Peers { node } => query::peers(mode, &node),
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

pub fn public_key_arg(text: &str) -> Result<PublicKey, Failure> {
    if let Ok(k) = PublicKey::from_hex(text.trim()) {
        return Ok(k);
    }
    Ok(read_key(Path::new(text))?.public())
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
