//! Region codes, GB/T 2260: six digits, the first two naming the province.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// A GB/T 2260 administrative division code (province, prefecture or county level)
/// whose province is one of the 31 provincial-level regions of mainland China.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionCode(u32);

/// A region code that breaks a GB/T 2260 rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RegionError {
    /// Not six ASCII digits.
    #[error("{field}: '{value}' is not a 6-digit region code (GB/T 2260)")]
    NotSixDigits {
        /// Field name.
        field: &'static str,
        /// The text given.
        value: String,
    },
    /// The first two digits name no provincial-level region of mainland China.
    #[error(
        "{field}: '{value}' names no provincial-level region of mainland China (first two digits, GB/T 2260)"
    )]
    UnknownProvince {
        /// Field name.
        field: &'static str,
        /// The text given.
        value: String,
    },
}

impl RegionError {
    /// The field holding the code.
    pub fn field(&self) -> &'static str {
        match self {
            RegionError::NotSixDigits { field, .. }
            | RegionError::UnknownProvince { field, .. } => field,
        }
    }
}

/// A provincial-level region: code and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Province {
    /// GB/T 2260 code, e.g. 310000.
    pub code: u32,
    /// Chinese name.
    pub name_zh: &'static str,
    /// English name.
    pub name_en: &'static str,
}

/// The 31 provincial-level regions of mainland China, in GB/T 2260 order.
pub const PROVINCES: [Province; 31] = [
    Province {
        code: 110000,
        name_zh: "北京市",
        name_en: "Beijing",
    },
    Province {
        code: 120000,
        name_zh: "天津市",
        name_en: "Tianjin",
    },
    Province {
        code: 130000,
        name_zh: "河北省",
        name_en: "Hebei",
    },
    Province {
        code: 140000,
        name_zh: "山西省",
        name_en: "Shanxi",
    },
    Province {
        code: 150000,
        name_zh: "内蒙古自治区",
        name_en: "Inner Mongolia",
    },
    Province {
        code: 210000,
        name_zh: "辽宁省",
        name_en: "Liaoning",
    },
    Province {
        code: 220000,
        name_zh: "吉林省",
        name_en: "Jilin",
    },
    Province {
        code: 230000,
        name_zh: "黑龙江省",
        name_en: "Heilongjiang",
    },
    Province {
        code: 310000,
        name_zh: "上海市",
        name_en: "Shanghai",
    },
    Province {
        code: 320000,
        name_zh: "江苏省",
        name_en: "Jiangsu",
    },
    Province {
        code: 330000,
        name_zh: "浙江省",
        name_en: "Zhejiang",
    },
    Province {
        code: 340000,
        name_zh: "安徽省",
        name_en: "Anhui",
    },
    Province {
        code: 350000,
        name_zh: "福建省",
        name_en: "Fujian",
    },
    Province {
        code: 360000,
        name_zh: "江西省",
        name_en: "Jiangxi",
    },
    Province {
        code: 370000,
        name_zh: "山东省",
        name_en: "Shandong",
    },
    Province {
        code: 410000,
        name_zh: "河南省",
        name_en: "Henan",
    },
    Province {
        code: 420000,
        name_zh: "湖北省",
        name_en: "Hubei",
    },
    Province {
        code: 430000,
        name_zh: "湖南省",
        name_en: "Hunan",
    },
    Province {
        code: 440000,
        name_zh: "广东省",
        name_en: "Guangdong",
    },
    Province {
        code: 450000,
        name_zh: "广西壮族自治区",
        name_en: "Guangxi",
    },
    Province {
        code: 460000,
        name_zh: "海南省",
        name_en: "Hainan",
    },
    Province {
        code: 500000,
        name_zh: "重庆市",
        name_en: "Chongqing",
    },
    Province {
        code: 510000,
        name_zh: "四川省",
        name_en: "Sichuan",
    },
    Province {
        code: 520000,
        name_zh: "贵州省",
        name_en: "Guizhou",
    },
    Province {
        code: 530000,
        name_zh: "云南省",
        name_en: "Yunnan",
    },
    Province {
        code: 540000,
        name_zh: "西藏自治区",
        name_en: "Xizang",
    },
    Province {
        code: 610000,
        name_zh: "陕西省",
        name_en: "Shaanxi",
    },
    Province {
        code: 620000,
        name_zh: "甘肃省",
        name_en: "Gansu",
    },
    Province {
        code: 630000,
        name_zh: "青海省",
        name_en: "Qinghai",
    },
    Province {
        code: 640000,
        name_zh: "宁夏回族自治区",
        name_en: "Ningxia",
    },
    Province {
        code: 650000,
        name_zh: "新疆维吾尔自治区",
        name_en: "Xinjiang",
    },
];

impl RegionCode {
    /// Parses a code, checking the digits and the province.
    pub fn parse(text: &str, field: &'static str) -> Result<RegionCode, RegionError> {
        if text.len() != 6 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RegionError::NotSixDigits {
                field,
                value: text.chars().take(32).collect(),
            });
        }
        let code: u32 = text.parse().map_err(|_| RegionError::NotSixDigits {
            field,
            value: text.to_owned(),
        })?;
        RegionCode::new(code, field)
    }

    /// Checks a numeric code.
    pub fn new(code: u32, field: &'static str) -> Result<RegionCode, RegionError> {
        if !(100_000..=999_999).contains(&code) {
            return Err(RegionError::NotSixDigits {
                field,
                value: code.to_string(),
            });
        }
        let province = code / 10_000 * 10_000;
        if !PROVINCES.iter().any(|p| p.code == province) {
            return Err(RegionError::UnknownProvince {
                field,
                value: format!("{code:06}"),
            });
        }
        Ok(RegionCode(code))
    }

    /// The numeric code.
    pub fn code(self) -> u32 {
        self.0
    }

    /// The province this code belongs to: 623001 (合作市) → 620000 (甘肃省).
    pub fn province(self) -> RegionCode {
        RegionCode(self.0 / 10_000 * 10_000)
    }

    /// True for a provincial-level code (last four digits zero).
    pub fn is_province(self) -> bool {
        self.0.is_multiple_of(10_000)
    }

    /// Names of the province this code belongs to.
    pub fn province_info(self) -> Province {
        let p = self.province().0;
        // Construction guarantees the province is in the table.
        PROVINCES
            .iter()
            .copied()
            .find(|x| x.code == p)
            .unwrap_or(Province {
                code: p,
                name_zh: "?",
                name_en: "?",
            })
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

impl Serialize for RegionCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_u32(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for RegionCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RegionCode, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            RegionCode::parse(&text, "region").map_err(serde::de::Error::custom)
        } else {
            RegionCode::new(u32::deserialize(d)?, "region").map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_one_distinct_provinces() {
        let mut codes: Vec<u32> = PROVINCES.iter().map(|p| p.code).collect();
        codes.dedup();
        assert_eq!(codes.len(), 31);
        assert!(
            PROVINCES
                .iter()
                .all(|p| RegionCode::new(p.code, "r").unwrap().is_province())
        );
    }

    #[test]
    fn city_codes_map_to_their_province() {
        // 合作市, Gannan prefecture, Gansu: the city whose office forwarded the guidance.
        let hezuo = RegionCode::parse("623001", "r").unwrap();
        assert_eq!(hezuo.province().code(), 620000);
        assert_eq!(hezuo.province_info().name_zh, "甘肃省");
        assert!(!hezuo.is_province());
    }

    #[test]
    fn rejects_bad_codes_with_the_rule() {
        assert!(matches!(
            RegionCode::parse("31000", "r"),
            Err(RegionError::NotSixDigits { .. })
        ));
        assert!(matches!(
            RegionCode::parse("31000a", "r"),
            Err(RegionError::NotSixDigits { .. })
        ));
        // 71 Taiwan, 81 Hong Kong, 99 nothing: not mainland provincial-level members.
        for c in ["710000", "810000", "990000", "000000"] {
            assert!(RegionCode::parse(c, "r").is_err(), "{c}");
        }
        let e = RegionCode::parse("990000", "subject.region")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("subject.region:"), "{e}");
    }
}
