//! The console's record forms, declared once: each names the body kind it builds and
//! its fields by their path in the body's JSON, so that a form's fields are the record's
//! own (docs/protocol.md) and the API's field errors point back at them. The body is
//! checked by the protocol when it is submitted; here only its shape is built.

use credfed_protocol::catalogue::Catalogue;
use credfed_protocol::record::{BlackCategory, Body, Category, ListEntry, RedSource};
use serde_json::{Map, Value};

/// How a field is entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// One line of text.
    Text,
    /// Several lines.
    LongText,
    /// `YYYY-MM-DD`.
    Date,
    /// One of fixed values (snake_case names of the protocol's enums).
    Choice(&'static [&'static str]),
    /// Several values: measures offered by the catalogue for the record.
    Measures,
    /// One measure of the action's.
    Measure,
    /// Several values, separated by commas (department ids, materials).
    List,
    /// Findings of a court-listed entry (several of the fixed names).
    Findings,
    /// A category `black:NAME` or `red:NAME` (chosen before the form, so that the
    /// measures offered fit it).
    Category,
    /// `all` or region codes separated by commas.
    Targets,
    /// A person's resident identity number: never put in the body as such; the node
    /// turns it, with the name, into the person's reference (`POST /v1/persons/refs`)
    /// before the body is built.
    PersonNumber,
    /// The person's name as on the decision document (goes with the number).
    PersonName,
    /// Related persons of an organisation (article 十一 names legal representatives,
    /// principals and those directly responsible), one per line as
    /// `role:number:name`; the numbers become references like the subject's.
    Related,
    /// An evaluation scheme of the catalogue.
    Scheme,
    /// A class such as `A` or `AEO` (1 to 4 ASCII characters).
    Class,
}

/// One field.
#[derive(Debug)]
pub struct FieldSpec {
    /// Path in the body's JSON, dot-separated.
    pub path: &'static str,
    /// Label in Chinese.
    pub zh: &'static str,
    /// Label in English.
    pub en: &'static str,
    /// How it is entered.
    pub input: Input,
    /// Must be given.
    pub required: bool,
}

/// One form.
#[derive(Debug)]
pub struct FormSpec {
    /// Its slug in `/console/forms/{slug}`.
    pub slug: &'static str,
    /// The body kind (`Body`'s snake_case variant) it builds.
    pub kind: &'static str,
    /// Title in Chinese.
    pub zh: &'static str,
    /// Title in English.
    pub en: &'static str,
    /// Its fields.
    pub fields: &'static [FieldSpec],
    /// Values every body of this form carries that the form does not ask for.
    pub fixed: &'static [(&'static str, &'static str)],
    /// The form changes a held entry: its content is the starting point (under
    /// `amended`) and only the fields given change it.
    pub amends_entry: bool,
}

const fn f(
    path: &'static str,
    zh: &'static str,
    en: &'static str,
    input: Input,
    required: bool,
) -> FieldSpec {
    FieldSpec {
        path,
        zh,
        en,
        input,
        required,
    }
}

use Input::*;

/// Every form the console offers (the acknowledgement has its own, on the action page;
/// any other body kind goes through the signing page as JSON).
pub const FORMS: &[FormSpec] = &[
    FormSpec {
        slug: "publish",
        kind: "list_entry_published",
        zh: "发布名单条目（法人和其他组织）",
        en: "Publish a list entry (organisation)",
        fields: &[
            f("category", "类别", "Category", Category, true),
            f(
                "subject.organisation.uscc",
                "统一社会信用代码",
                "USCC",
                Text,
                true,
            ),
            f("subject.organisation.name", "名称", "Name", Text, true),
            f(
                "basis.document_no",
                "决定文书号",
                "Decision document no.",
                Text,
                true,
            ),
            f(
                "basis.authority",
                "决定机关",
                "Deciding authority",
                Text,
                true,
            ),
            f("basis.decided_on", "决定日期", "Decided on", Date, true),
            f("basis.legal_basis", "法律依据", "Legal basis", Text, true),
            f("effective_from", "起始日期", "Effective from", Date, true),
            f("expires_on", "截止日期", "Expires on", Date, true),
            f("findings", "认定情形", "Findings", Findings, false),
            f(
                "related_persons",
                "相关自然人（每行一人：角色:身份证号码:姓名）",
                "Related persons (one per line: role:number:name)",
                Related,
                false,
            ),
            f(
                "requested_measures",
                "请求的措施",
                "Measures requested",
                Measures,
                false,
            ),
            f("summary", "摘要", "Summary", LongText, false),
        ],
        fixed: &[("related_persons", "[]")],
        amends_entry: false,
    },
    FormSpec {
        slug: "publish-person",
        kind: "list_entry_published",
        zh: "发布名单条目（自然人）",
        en: "Publish a list entry (natural person)",
        fields: &[
            f("category", "类别", "Category", Category, true),
            f(
                "person.number",
                "身份证号码",
                "Resident identity number",
                PersonNumber,
                true,
            ),
            f("person.name", "姓名", "Name", PersonName, true),
            f(
                "basis.document_no",
                "决定文书号",
                "Decision document no.",
                Text,
                true,
            ),
            f(
                "basis.authority",
                "决定机关",
                "Deciding authority",
                Text,
                true,
            ),
            f("basis.decided_on", "决定日期", "Decided on", Date, true),
            f("basis.legal_basis", "法律依据", "Legal basis", Text, true),
            f("effective_from", "起始日期", "Effective from", Date, true),
            f("expires_on", "截止日期", "Expires on", Date, true),
            f("findings", "认定情形", "Findings", Findings, false),
            f(
                "requested_measures",
                "请求的措施",
                "Measures requested",
                Measures,
                false,
            ),
            f("summary", "摘要", "Summary", LongText, false),
        ],
        fixed: &[("related_persons", "[]")],
        amends_entry: false,
    },
    FormSpec {
        slug: "amend",
        kind: "list_entry_amended",
        zh: "更正名单条目（第二十二条，只改填写的项）",
        en: "Amend a list entry (article 二十二; only the fields filled in change)",
        fields: &[
            f("entry", "名单条目", "Entry", Text, true),
            f(
                "amended.basis.document_no",
                "决定文书号",
                "Decision document no.",
                Text,
                false,
            ),
            f(
                "amended.basis.authority",
                "决定机关",
                "Deciding authority",
                Text,
                false,
            ),
            f(
                "amended.basis.decided_on",
                "决定日期",
                "Decided on",
                Date,
                false,
            ),
            f(
                "amended.basis.legal_basis",
                "法律依据",
                "Legal basis",
                Text,
                false,
            ),
            f(
                "amended.effective_from",
                "起始日期",
                "Effective from",
                Date,
                false,
            ),
            f("amended.expires_on", "截止日期", "Expires on", Date, false),
            f(
                "amended.requested_measures",
                "请求的措施",
                "Measures requested",
                Measures,
                false,
            ),
            f("amended.summary", "摘要", "Summary", LongText, false),
            f(
                "amended.related_persons",
                "相关自然人（填写则整体替换；每行一人：角色:身份证号码:姓名）",
                "Related persons (replaces them all if given; one per line: role:number:name)",
                Related,
                false,
            ),
            f("reason", "更正原因", "Reason", LongText, true),
        ],
        fixed: &[],
        amends_entry: true,
    },
    FormSpec {
        slug: "evaluate",
        kind: "evaluation_published",
        zh: "发布信用评价结果（第六、十六条）",
        en: "Publish an evaluation result (articles 六, 十六)",
        fields: &[
            f(
                "subject.organisation.uscc",
                "统一社会信用代码",
                "USCC",
                Text,
                true,
            ),
            f("subject.organisation.name", "名称", "Name", Text, true),
            f("scheme", "评价体系", "Scheme", Scheme, true),
            f("grade", "等级", "Class", Class, true),
            f("evaluated_on", "评价日期", "Evaluated on", Date, true),
            f("valid_until", "有效期至", "Valid until", Date, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "evaluation-revoke",
        kind: "evaluation_revoked",
        zh: "撤销信用评价结果",
        en: "Revoke an evaluation result",
        fields: &[
            f("evaluation", "评价", "Evaluation", Text, true),
            f("reason", "原因", "Reason", LongText, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "revoke",
        kind: "list_entry_revoked",
        zh: "撤销错误信息（第二十二条）",
        en: "Revoke wrong information (article 二十二)",
        fields: &[
            f("entry", "名单条目", "Entry", Text, true),
            f("reason", "原因", "Reason", LongText, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "repair",
        kind: "list_entry_repaired",
        zh: "信用修复（第二十一条）",
        en: "Credit repair (article 二十一)",
        fields: &[
            f("entry", "名单条目", "Entry", Text, true),
            f(
                "basis",
                "修复依据",
                "Basis",
                Choice(&["corrected_within_period", "public_service"]),
                true,
            ),
            f("reason", "说明", "Details", LongText, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "repair-apply",
        kind: "repair_applied",
        zh: "受理信用修复申请",
        en: "Record a repair application",
        fields: &[
            f("entry", "名单条目", "Entry", Text, true),
            f("case_no", "受理编号", "Case no.", Text, true),
            f(
                "basis",
                "申请依据",
                "Basis claimed",
                Choice(&["corrected_within_period", "public_service"]),
                true,
            ),
            f("grounds", "理由", "Grounds", LongText, true),
            f("filed_on", "申请日期", "Filed on", Date, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "repair-decide",
        kind: "repair_decided",
        zh: "信用修复决定",
        en: "Decide a repair application",
        fields: &[
            f("entry", "名单条目", "Entry", Text, true),
            f("application", "申请", "Application", Text, true),
            f(
                "outcome",
                "决定",
                "Outcome",
                Choice(&["repaired", "refused", "not_accepted"]),
                true,
            ),
            f("reason", "理由", "Reasons", LongText, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "initiate",
        kind: "joint_action_initiated",
        zh: "发起联合奖惩（第十五、十八条）",
        en: "Initiate a joint action (articles 十五, 十八)",
        fields: &[
            f("entry", "名单条目", "Entry", Text, true),
            f("reference", "文号", "Reference", Text, true),
            f(
                "kind",
                "类型",
                "Kind",
                Choice(&["punishment", "incentive"]),
                true,
            ),
            f("targets", "对象地区", "Target regions", Targets, true),
            f("measures", "措施", "Measures", Measures, true),
            f("respond_by", "回复期限", "Respond by", Date, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "execute",
        kind: "measure_executed",
        zh: "反馈措施执行（第十八条）",
        en: "Report execution (article 十八)",
        fields: &[
            f("action", "联合行动", "Action", Text, true),
            f("measure", "措施", "Measure", Measure, true),
            f("reference", "实施决定文号", "Reference", Text, true),
            f("executed_on", "执行日期", "Executed on", Date, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "lift",
        kind: "measure_lifted",
        zh: "解除措施",
        en: "Lift a measure",
        fields: &[
            f("action", "联合行动", "Action", Text, true),
            f("measure", "措施", "Measure", Measure, true),
            f("reference", "解除决定文号", "Reference", Text, true),
            f("reason", "原因", "Reason", LongText, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "object",
        kind: "objection_filed",
        zh: "受理异议（第二十二条）",
        en: "Record an objection (article 二十二)",
        fields: &[
            f("target.entry", "名单条目", "Entry", Text, true),
            f("case_no", "受理编号", "Case no.", Text, true),
            f("grounds", "异议理由", "Grounds", LongText, true),
            f("filed_on", "受理日期", "Filed on", Date, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "object-evaluation",
        kind: "objection_filed",
        zh: "受理对信用评价的异议（第二十二条）",
        en: "Record an objection to an evaluation (article 二十二)",
        fields: &[
            f("target.evaluation", "信用评价", "Evaluation", Text, true),
            f("case_no", "受理编号", "Case no.", Text, true),
            f("grounds", "异议理由", "Grounds", LongText, true),
            f("filed_on", "受理日期", "Filed on", Date, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "resolve",
        kind: "objection_resolved",
        zh: "异议处理结果",
        en: "Resolve an objection",
        fields: &[
            f("objection", "异议", "Objection", Text, true),
            f(
                "outcome",
                "结果",
                "Outcome",
                Choice(&["upheld", "corrected", "revoked"]),
                true,
            ),
            f("note", "说明", "Note", LongText, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "commitment",
        kind: "commitment_made",
        zh: "信用承诺（容缺受理，第四条）",
        en: "Written commitment (容缺受理, article 四)",
        fields: &[
            f(
                "subject.organisation.uscc",
                "统一社会信用代码",
                "USCC",
                Text,
                true,
            ),
            f("subject.organisation.name", "名称", "Name", Text, true),
            f("acceptance_no", "受理编号", "Acceptance no.", Text, true),
            f("matter", "申请事项", "Matter", Text, true),
            f(
                "waived",
                "容缺材料（逗号分隔）",
                "Waived materials (comma-separated)",
                List,
                true,
            ),
            f("made_on", "承诺日期", "Made on", Date, true),
            f("due_on", "补正期限", "Due on", Date, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "settle",
        kind: "commitment_settled",
        zh: "承诺履行结果",
        en: "Settle a commitment",
        fields: &[
            f("commitment", "承诺", "Commitment", Text, true),
            f(
                "outcome",
                "结果",
                "Outcome",
                Choice(&["fulfilled", "breached"]),
                true,
            ),
            f("settled_on", "日期", "Settled on", Date, true),
            f("note", "说明", "Note", LongText, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
    FormSpec {
        slug: "disclose",
        kind: "decision_disclosed",
        zh: "双公示（第十七条）",
        en: "Disclose a decision (双公示, article 十七)",
        fields: &[
            f(
                "kind",
                "类型",
                "Kind",
                Choice(&["licensing", "penalty"]),
                true,
            ),
            f(
                "subject.organisation.uscc",
                "统一社会信用代码",
                "USCC",
                Text,
                true,
            ),
            f("subject.organisation.name", "名称", "Name", Text, true),
            f("decision_no", "决定文书号", "Decision no.", Text, true),
            f("authority", "决定机关", "Authority", Text, true),
            f("decided_on", "决定日期", "Decided on", Date, true),
            f("summary", "内容摘要", "Summary", LongText, true),
            f("public_until", "公示截止", "Public until", Date, true),
        ],
        fixed: &[],
        amends_entry: false,
    },
];

/// The form of a slug.
pub fn form(slug: &str) -> Option<&'static FormSpec> {
    FORMS.iter().find(|f| f.slug == slug)
}

/// Every category as `list:name`, with its Chinese name for black-list categories.
pub fn categories() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = BlackCategory::ALL
        .iter()
        .map(|c| {
            let n = credfed_protocol::catalogue::snake_name(c);
            (format!("black:{n}"), format!("{} ({n})", c.name_zh()))
        })
        .collect();
    for r in [
        RedSource::GoodCreditClassification,
        RedSource::MoralModel,
        RedSource::OutstandingYouthVolunteer,
        RedSource::AssociationRecommendedMember,
        RedSource::MediaIdentified,
        RedSource::NoAdverseRecord,
    ] {
        let n = credfed_protocol::catalogue::snake_name(&r);
        out.push((format!("red:{n}"), format!("红名单 {n}")));
    }
    out
}

/// `black:name` → the category.
pub fn parse_category(v: &str) -> Option<Category> {
    let (list, name) = v.split_once(':')?;
    let json = match list {
        "black" | "red" => serde_json::json!({ list: name }),
        _ => return None,
    };
    serde_json::from_value(json).ok()
}

/// The measures of the catalogue that can apply to `entry` (its list, category,
/// findings, and its subject or related persons): what the forms offer.
pub fn measures_for(catalogue: &Catalogue, entry: &ListEntry) -> Vec<(String, String)> {
    catalogue
        .measures
        .iter()
        .filter(|m| m.applicable(entry).is_ok())
        .map(|m| (m.code.0.clone(), m.title_zh.clone()))
        .collect()
}

/// The person a form names (number and name), if it names one.
pub fn person_of(spec: &FormSpec, values: &[(String, String)]) -> Option<(String, String)> {
    let get = |input: Input| {
        let field = spec.fields.iter().find(|f| f.input == input)?;
        values
            .iter()
            .find(|(k, _)| k == field.path)
            .map(|(_, v)| v.trim().to_owned())
    };
    spec.fields
        .iter()
        .any(|f| f.input == PersonNumber)
        .then(|| {
            (
                get(PersonNumber).unwrap_or_default(),
                get(PersonName).unwrap_or_default(),
            )
        })
}

/// One related person as a form lists it: role, clear number, name.
pub type RelatedLine = (credfed_protocol::record::RelatedRole, String, String);

/// The related persons a form lists: `(role, number, name)` per non-empty line, the
/// role checked; a bad line names the field and its line.
pub fn related_of(
    spec: &FormSpec,
    values: &[(String, String)],
) -> Result<Vec<RelatedLine>, (String, String)> {
    let Some(field) = spec.fields.iter().find(|f| f.input == Related) else {
        return Ok(Vec::new());
    };
    let text = values
        .iter()
        .find(|(k, _)| k == field.path)
        .map_or("", |(_, v)| v.as_str());
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let bad = |m: String| (field.path.to_owned(), format!("{}[{i}]: {m}", field.path));
        let parts: Vec<&str> = line.splitn(3, [':', '：']).map(str::trim).collect();
        let [role, number, name] = parts[..] else {
            return Err(bad(format!(
                "'{}' is not role:number:name (e.g. legal_representative:11010519491231002X:张三)",
                line.chars().take(60).collect::<String>()
            )));
        };
        let role: credfed_protocol::record::RelatedRole =
            serde_json::from_value(Value::String(role.to_owned())).map_err(|_| {
                bad(format!(
                    "role '{}' is not one of legal_representative, principal_responsible, actual_controller, directly_responsible, director_supervisor_or_senior_manager",
                    role.chars().take(40).collect::<String>()
                ))
            })?;
        if name.is_empty() {
            return Err(bad("the name is missing".into()));
        }
        out.push((role, number.to_owned(), name.to_owned()));
    }
    Ok(out)
}

/// Builds the body a form's values describe, with `resolved` values set at their paths
/// (the person's reference the node computed); a missing required field or a value of
/// the wrong shape names the field.
pub fn build(
    spec: &FormSpec,
    values: &[(String, String)],
    resolved: &[(&str, Value)],
) -> Result<Body, (String, String)> {
    let mut obj = Value::Object(Map::new());
    // An amendment starts from the entry as held; a field left empty keeps its value.
    if spec.amends_entry {
        for (path, v) in resolved {
            set(&mut obj, path, v.clone());
        }
    }
    for (path, json) in spec.fixed {
        let v: Value =
            serde_json::from_str(json).map_err(|e| (path.to_string(), format!("{path}: {e}")))?;
        set(&mut obj, path, v);
    }
    for field in spec.fields {
        let given: Vec<&str> = values
            .iter()
            .filter(|(k, _)| k == field.path)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .collect();
        let first = given.first().copied().unwrap_or("");
        if spec.amends_entry && !field.required && given.is_empty() {
            continue;
        }
        if field.required && given.is_empty() {
            return Err((
                field.path.to_owned(),
                format!("{}: required ({} / {})", field.path, field.zh, field.en),
            ));
        }
        let v = match field.input {
            // Resolved into persons' references before the body is built.
            PersonNumber | PersonName | Related => continue,
            Text | LongText | Date | Measure | Scheme | Choice(_) if first.is_empty() => {
                Value::String(String::new())
            }
            Text | LongText | Date | Measure | Scheme => Value::String(first.to_owned()),
            Class => {
                let c = first.to_ascii_uppercase();
                if c.is_empty() || c.len() > 4 || !c.is_ascii() {
                    return Err((
                        field.path.to_owned(),
                        format!(
                            "{}: '{}' must be 1 to 4 ASCII characters, e.g. A or AEO",
                            field.path,
                            first.chars().take(10).collect::<String>()
                        ),
                    ));
                }
                let mut g = [0u8; 4];
                g[..c.len()].copy_from_slice(c.as_bytes());
                serde_json::json!({ "class": g })
            }
            Choice(options) => {
                if !options.contains(&first) {
                    return Err((
                        field.path.to_owned(),
                        format!(
                            "{}: '{}' is not one of {}",
                            field.path,
                            first.chars().take(40).collect::<String>(),
                            options.join(", ")
                        ),
                    ));
                }
                Value::String(first.to_owned())
            }
            Measures | Findings => Value::Array(
                given
                    .iter()
                    .map(|s| Value::String((*s).to_owned()))
                    .collect(),
            ),
            List => Value::Array(
                given
                    .iter()
                    .flat_map(|s| s.split([',', '，', '、']))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            Category => {
                let c = parse_category(first).ok_or_else(|| {
                    (
                        field.path.to_owned(),
                        format!(
                            "{}: '{}' is not a category (black:NAME or red:NAME)",
                            field.path,
                            first.chars().take(60).collect::<String>()
                        ),
                    )
                })?;
                serde_json::to_value(c).map_err(|e| (field.path.to_owned(), e.to_string()))?
            }
            Targets => {
                if first == "all" {
                    Value::String("all_members".into())
                } else {
                    let regions: Vec<Value> = first
                        .split([',', '，', ' '])
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_owned()))
                        .collect();
                    serde_json::json!({ "regions": regions })
                }
            }
        };
        set(&mut obj, field.path, v);
    }
    if !spec.amends_entry {
        for (path, v) in resolved {
            set(&mut obj, path, v.clone());
        }
    }
    let body = serde_json::json!({ spec.kind: obj });
    serde_json::from_value::<Body>(body).map_err(|e| {
        // serde names the value it could not read, not always its path: the message
        // is shown beside the form, and the protocol's own checks on submission name
        // their fields.
        (
            "body".to_owned(),
            format!("the form does not make a {}: {e}", spec.kind),
        )
    })
}

fn set(obj: &mut Value, path: &str, v: Value) {
    let mut at = obj;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            at[*p] = v;
            return;
        }
        if !at[*p].is_object() {
            at[*p] = Value::Object(Map::new());
        }
        at = &mut at[*p];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const ID: &str = "5f4a061a89d8f1474c77f4e46a96c16e58da28f28edfbd93991e5196b2860217";

    /// Every form, filled in, makes a body of its kind: the declarations match the
    /// protocol's types.
    #[test]
    fn every_form_filled_in_makes_a_body_of_its_kind() {
        for spec in FORMS {
            let filled: Vec<(String, String)> = spec
                .fields
                .iter()
                .map(|f| {
                    let v = match f.input {
                        Text => match f.path {
                            p if p.ends_with("uscc") => "91350100M000100Y43",
                            "entry" | "action" | "objection" | "commitment" | "application"
                            | "target.entry" | "target.evaluation" | "evaluation" => ID,
                            _ => "x",
                        },
                        LongText => "说明",
                        Date => "2026-12-01",
                        Choice(o) => o[0],
                        Measures | Measure => "P-PROCUREMENT",
                        List => "a, b",
                        Findings => "able_but_refuses",
                        Category => "black:food_and_drug",
                        Targets => "440000,620000",
                        PersonNumber => "11010519491231002X",
                        PersonName => "张三",
                        Scheme => "tax-credit",
                        Related => "legal_representative:11010519491231002X:张三",
                        Class => "a",
                    };
                    (f.path.to_owned(), v.to_owned())
                })
                .collect();
            let resolved = if spec.amends_entry {
                vec![(
                    "amended",
                    serde_json::to_value(sample_entry("black:food_and_drug")).unwrap(),
                )]
            } else if person_of(spec, &filled).is_some() {
                vec![(
                    "subject",
                    serde_json::json!({"person": {
                        "id_hash": ID, "masked": "11****************", "name": "张三"
                    }}),
                )]
            } else {
                vec![]
            };
            let body =
                build(spec, &filled, &resolved).unwrap_or_else(|e| panic!("{}: {e:?}", spec.slug));
            assert_eq!(
                credfed_protocol::catalogue::snake_name(&body.kind()),
                spec.kind,
                "{}",
                spec.slug
            );
        }
    }

    /// `form` names the form in the posted fields: no record field may take it.
    #[test]
    fn no_field_is_named_like_the_form_selector() {
        for spec in FORMS {
            for field in spec.fields {
                assert_ne!(field.path, "form", "{}", spec.slug);
            }
        }
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let spec = form("revoke").unwrap();
        let e = build(spec, &values(&[("entry", ID)]), &[]).unwrap_err();
        assert_eq!(e.0, "reason");
        assert!(e.1.contains("required"), "{}", e.1);
    }

    #[test]
    fn a_choice_outside_its_options_is_named() {
        let spec = form("resolve").unwrap();
        let e = build(
            spec,
            &values(&[("objection", ID), ("outcome", "ignored"), ("note", "n")]),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.0, "outcome");
    }

    #[test]
    fn targets_all_or_listed_regions() {
        let spec = form("initiate").unwrap();
        let base = [
            ("entry", ID),
            ("reference", "r"),
            ("kind", "punishment"),
            ("measures", "P-PROCUREMENT"),
            ("respond_by", "2026-12-20"),
        ];
        let mut all = values(&base);
        all.push(("targets".into(), "all".into()));
        match build(spec, &all, &[]).unwrap() {
            Body::JointActionInitiated(a) => {
                assert_eq!(a.targets, credfed_protocol::record::Targets::AllMembers)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn related_persons_are_read_line_by_line_and_bad_lines_named() {
        let spec = form("publish").unwrap();
        let ok = related_of(
            spec,
            &values(&[(
                "related_persons",
                "legal_representative:11010519491231002X:张三\n\n directly_responsible：440524188001010014：李四",
            )]),
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].2, "李四");
        let e = related_of(spec, &values(&[("related_persons", "chairman:1:x")])).unwrap_err();
        assert_eq!(e.0, "related_persons");
        assert!(
            e.1.contains("related_persons[0]: role 'chairman'"),
            "{}",
            e.1
        );
        let e = related_of(spec, &values(&[("related_persons", "张三")])).unwrap_err();
        assert!(e.1.contains("role:number:name"), "{}", e.1);
    }

    /// An amendment changes only the fields filled in; the rest stay as held.
    #[test]
    fn an_amendment_keeps_what_is_not_filled_in() {
        let held = sample_entry("black:food_and_drug");
        let spec = form("amend").unwrap();
        let body = build(
            spec,
            &values(&[
                ("entry", ID),
                ("amended.expires_on", "2026-12-31"),
                ("amended.summary", ""),
                ("reason", "更正"),
            ]),
            &[("amended", serde_json::to_value(&held).unwrap())],
        )
        .unwrap();
        match body {
            Body::ListEntryAmended {
                amended, reason, ..
            } => {
                assert_eq!(amended.expires_on.to_string(), "2026-12-31");
                assert_eq!(
                    ListEntry {
                        expires_on: held.expires_on,
                        ..amended
                    },
                    held
                );
                assert_eq!(reason, "更正");
            }
            other => panic!("{other:?}"),
        }
    }

    fn sample_entry(category: &str) -> ListEntry {
        ListEntry {
            category: parse_category(category).unwrap(),
            subject: credfed_protocol::record::Subject::Organisation {
                uscc: "91350100M000100Y43".into(),
                name: "x".into(),
                check_exemption: None,
            },
            related_persons: vec![],
            basis: credfed_protocol::record::Basis {
                document_no: "d".into(),
                authority: "a".into(),
                decided_on: credfed_protocol::time::Date::parse("2026-01-01").unwrap(),
                legal_basis: "l".into(),
            },
            effective_from: credfed_protocol::time::Date::parse("2026-01-01").unwrap(),
            expires_on: credfed_protocol::time::Date::parse("2027-01-01").unwrap(),
            requested_measures: vec![],
            findings: vec![],
            summary: String::new(),
        }
    }

    /// The measures offered for a food-and-drug black-list entry against a company are
    /// punishments the catalogue lets serve that category; no incentive is offered.
    #[test]
    fn measures_offered_fit_the_category_and_the_subject() {
        let catalogue = Catalogue::embedded().unwrap();
        let entry = sample_entry("black:food_and_drug");
        let offered = measures_for(&catalogue, &entry);
        assert!(
            offered.iter().any(|(c, _)| c == "P-PROCUREMENT"),
            "{offered:?}"
        );
        for (code, _) in &offered {
            let m = catalogue
                .get(&credfed_protocol::record::MeasureCode(code.clone()))
                .unwrap();
            assert_eq!(m.kind, credfed_protocol::record::ActionKind::Punishment);
            assert!(m.applicable(&entry).is_ok());
        }
        let all = catalogue.measures.len();
        assert!(offered.len() < all, "nothing was filtered out");
    }
}
