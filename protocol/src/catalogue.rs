//! The measures catalogue (措施清单, article 二十), shipped as `data/measures.toml`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::crypto::{Hash256, sha256};
use crate::record::{ActionKind, MeasureCode};

/// The catalogue embedded in this build.
pub const EMBEDDED_CATALOGUE: &str = include_str!("../data/measures.toml");

/// Where a measure bites: the domain an asking department works in (应查必查).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureDomain {
    /// Administrative licensing and permits (行政许可).
    Licensing,
    /// Approval of investment projects (项目审批、核准).
    ProjectApproval,
    /// Share and bond issuance, listing (证券).
    Securities,
    /// Founding or holding stakes in financial institutions.
    FinancialInstitutions,
    /// Internet information services.
    InternetServices,
    /// Fiscal funding and preferential policies (财政性资金).
    FiscalFunding,
    /// Public resource trading (公共资源交易).
    PublicResourceTrading,
    /// Government procurement and tendering (政府采购、招投标).
    Procurement,
    /// Infrastructure and utility concessions (特许经营).
    Concessions,
    /// Market and industry entry (市场和行业准入).
    MarketEntry,
    /// Honours and awards (荣誉、评先评优).
    Honours,
    /// Supervision and inspection frequency (监管、检查).
    Inspection,
    /// Public services: education, employment, social security (公共服务).
    PublicServices,
    /// Lending and credit products (融资、信贷).
    Financing,
    /// Insurance.
    Insurance,
    /// Commercial services (市场服务机构).
    MarketServices,
    /// Travel: exit, flights, high-speed rail (出行).
    Travel,
    /// High consumption: real estate, hotels, holidays (高消费).
    HighConsumption,
    /// Publication and promotion (公示、披露、推介).
    Disclosure,
    /// Trade association self-regulation (行业自律).
    IndustrySelfRegulation,
    /// Social supervision: reports, public-interest litigation (社会监督).
    SocialSupervision,
}

impl MeasureDomain {
    /// Every domain.
    pub const ALL: [MeasureDomain; 21] = {
        use MeasureDomain::*;
        [
            Licensing,
            ProjectApproval,
            Securities,
            FinancialInstitutions,
            InternetServices,
            FiscalFunding,
            PublicResourceTrading,
            Procurement,
            Concessions,
            MarketEntry,
            Honours,
            Inspection,
            PublicServices,
            Financing,
            Insurance,
            MarketServices,
            Travel,
            HighConsumption,
            Disclosure,
            IndustrySelfRegulation,
            SocialSupervision,
        ]
    };

    /// The snake_case name used in files, JSON and the CLI.
    pub fn name(self) -> String {
        // serde_json is not a dependency of this crate; the TOML serializer gives the
        // same snake_case spelling for a unit variant.
        toml::Value::try_from(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Parses a snake_case name.
    pub fn parse(name: &str) -> Option<MeasureDomain> {
        MeasureDomain::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// One measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    /// Code, e.g. `P-11-04`.
    pub code: MeasureCode,
    /// Incentive or punishment.
    pub kind: ActionKind,
    /// 强制性 (true) or 推荐性 (false).
    pub mandatory: bool,
    /// Article of the guidance it comes from (4–8 incentives, 10–13 punishments).
    pub article: u8,
    /// Domains it bites in.
    pub domains: Vec<MeasureDomain>,
    /// Chinese title.
    pub title_zh: String,
    /// English title.
    pub title_en: String,
    /// Legal basis.
    pub legal_basis: String,
}

/// The whole catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// Catalogue version.
    pub version: u32,
    /// Measures, in file order.
    #[serde(rename = "measure")]
    pub measures: Vec<Measure>,
}

/// A catalogue file that breaks a rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CatalogueError {
    /// Not valid TOML for the schema (unknown domains and fields are caught here).
    #[error("catalogue: {0}")]
    Parse(String),
    /// A measure breaks a rule.
    #[error("catalogue: measure {code}: {rule}")]
    Measure {
        /// The measure's code.
        code: String,
        /// The rule.
        rule: String,
    },
}

impl Catalogue {
    /// Parses and validates a catalogue file.
    pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        let c: Catalogue =
            toml::from_str(text).map_err(|e| CatalogueError::Parse(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// The catalogue shipped with this build.
    pub fn embedded() -> Result<Catalogue, CatalogueError> {
        Catalogue::parse(EMBEDDED_CATALOGUE)
    }

    /// SHA-256 of a catalogue file's bytes, as recorded in the manifest.
    pub fn file_hash(text: &str) -> Hash256 {
        sha256(&[text.as_bytes()])
    }

    /// Unique codes; code prefix, article and kind agree; at least one domain.
    pub fn validate(&self) -> Result<(), CatalogueError> {
        let mut seen = BTreeSet::new();
        for m in &self.measures {
            let bad = |rule: String| CatalogueError::Measure {
                code: m.code.0.clone(),
                rule,
            };
            m.code.validate("code").map_err(|e| bad(e.to_string()))?;
            if !seen.insert(&m.code) {
                return Err(bad("code appears twice".into()));
            }
            let (want_kind, articles) = match m.code.0.as_bytes()[0] {
                b'I' => (ActionKind::Incentive, 4..=8),
                _ => (ActionKind::Punishment, 10..=13),
            };
            if m.kind != want_kind {
                return Err(bad(format!(
                    "kind {:?} does not match the code prefix",
                    m.kind
                )));
            }
            if !articles.contains(&m.article) || m.code.0[2..4] != format!("{:02}", m.article) {
                return Err(bad(format!(
                    "article {} does not match the code or the kind",
                    m.article
                )));
            }
            if m.domains.is_empty() {
                return Err(bad("names no domain".into()));
            }
            if m.title_zh.is_empty() || m.legal_basis.is_empty() {
                return Err(bad("title_zh and legal_basis are required".into()));
            }
        }
        Ok(())
    }

    /// The measure with this code.
    pub fn get(&self, code: &MeasureCode) -> Option<&Measure> {
        self.measures.iter().find(|m| &m.code == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalogue_is_valid_and_covers_articles_4_to_13() {
        let c = Catalogue::embedded().unwrap();
        // Articles 四–八 (incentives) and 十–十三 (punishments) each have measures.
        for article in (4..=8).chain(10..=13) {
            assert!(
                c.measures.iter().any(|m| m.article == article),
                "article {article} has no measure"
            );
        }
        // Article 十一's consumption and travel restrictions are all there (失信被执行人).
        for code in [
            "P-11-02", "P-11-03", "P-11-04", "P-11-05", "P-11-06", "P-11-07",
        ] {
            assert!(
                c.get(&MeasureCode(code.into())).unwrap().mandatory,
                "{code}"
            );
        }
        // Article 四's green channel is an incentive in licensing.
        let g = c.get(&MeasureCode("I-04-01".into())).unwrap();
        assert_eq!(g.kind, ActionKind::Incentive);
        assert!(g.domains.contains(&MeasureDomain::Licensing));
        assert!(c.measures.iter().any(|m| m.mandatory) && c.measures.iter().any(|m| !m.mandatory));
    }

    #[test]
    fn duplicate_codes_unknown_domains_and_mismatches_are_refused() {
        let dup = format!(
            "{}\n[[measure]]\ncode = \"I-04-01\"\nkind = \"incentive\"\nmandatory = false\narticle = 4\ndomains = [\"licensing\"]\ntitle_zh = \"x\"\ntitle_en = \"x\"\nlegal_basis = \"x\"\n",
            EMBEDDED_CATALOGUE
        );
        assert!(
            Catalogue::parse(&dup)
                .unwrap_err()
                .to_string()
                .contains("appears twice")
        );
        let unknown = EMBEDDED_CATALOGUE.replacen("\"licensing\"", "\"astrology\"", 1);
        assert!(matches!(
            Catalogue::parse(&unknown),
            Err(CatalogueError::Parse(_))
        ));
        let wrong_kind =
            EMBEDDED_CATALOGUE.replacen("kind = \"incentive\"", "kind = \"punishment\"", 1);
        assert!(
            Catalogue::parse(&wrong_kind)
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
    }

    #[test]
    fn domain_names_round_trip() {
        for d in MeasureDomain::ALL {
            assert_eq!(MeasureDomain::parse(&d.name()), Some(d));
        }
        assert_eq!(MeasureDomain::Procurement.name(), "procurement");
    }
}
