//! Unified Social Credit Code (统一社会信用代码), GB 32100-2015.
//!
//! Layout of the 18 characters:
//! 1 registration authority · 2 entity type · 3–8 the registration authority's
//! division code (GB/T 2260; `100000` for a national authority, e.g. the State
//! Administration for Market Regulation registering the largest state-owned
//! enterprises) · 9–17 organisation code (GB 11714) · 18 check character.
//! The alphabet is the 31 characters `0-9 A-H J-N P-R T U W-Y` (no I, O, S, V, Z).

use thiserror::Error;

use super::region::RegionCode;

/// The code's alphabet, in value order (the index is the character's value).
pub const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Weights of positions 1–17: 3^(i-1) mod 31.
const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// Registration authorities and the entity types each may assign (GB 32100-2015, table 1
/// and its later additions). A code whose first two characters are not a pair from this
/// table was not issued under the standard.
const AUTHORITIES: &[(u8, &str, &[u8])] = &[
    (b'1', "机构编制", b"1239"),
    (b'2', "外交", b"19"),
    (b'3', "司法行政", b"1234569"),
    (b'4', "文化", b"19"),
    (b'5', "民政", b"1239"),
    (b'6', "旅游", b"129"),
    (b'7', "宗教", b"129"),
    (b'8', "工会", b"19"),
    (b'9', "工商", b"123"),
    (b'A', "中央军委改革和编制办公室", b"19"),
    (b'N', "农业", b"1239"),
    (b'Y', "其他", b"1"),
];

/// Positions 3–8 of a code assigned by a national registration authority: the code of
/// the whole country in GB/T 2260.
pub const NATIONAL_AUTHORITY: &str = "100000";

/// A rule of GB 32100-2015 that a code breaks.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UsccError {
    /// Not 18 characters.
    #[error("{field}: {len} characters, expected 18 (GB 32100-2015)")]
    Length {
        /// Field name.
        field: &'static str,
        /// Characters given.
        len: usize,
    },
    /// A character outside the 31-character alphabet.
    #[error(
        "{field}: character '{ch}' at position {position} is not in 0-9 A-H J-N P-R T U W-Y (GB 32100-2015)"
    )]
    Character {
        /// Field name.
        field: &'static str,
        /// The offending character.
        ch: char,
        /// Its 1-based position.
        position: usize,
    },
    /// Unknown registration authority code (position 1).
    #[error(
        "{field}: registration authority code '{ch}' is not assigned (GB 32100-2015 position 1)"
    )]
    Authority {
        /// Field name.
        field: &'static str,
        /// Position-1 character.
        ch: char,
    },
    /// Entity type (position 2) not defined for that authority.
    #[error(
        "{field}: entity type '{ch}' is not defined for authority '{authority}' {authority_name} (GB 32100-2015 position 2)"
    )]
    EntityType {
        /// Field name.
        field: &'static str,
        /// Position-2 character.
        ch: char,
        /// Position-1 character.
        authority: char,
        /// The authority's name.
        authority_name: &'static str,
    },
    /// Positions 3–8 are not a region code.
    #[error(
        "{field}: positions 3-8 '{region}' are neither 100000 (a national registration authority) nor a GB/T 2260 division of mainland China (GB 32100-2015)"
    )]
    Region {
        /// Field name.
        field: &'static str,
        /// The six characters.
        region: String,
    },
    /// Wrong check character (position 18).
    #[error("{field}: check character is '{found}', expected '{expected}' (GB 32100-2015)")]
    Check {
        /// Field name.
        field: &'static str,
        /// Character given.
        found: char,
        /// Character the weights give.
        expected: char,
    },
}

impl UsccError {
    /// The field holding the code.
    pub fn field(&self) -> &'static str {
        match self {
            UsccError::Length { field, .. }
            | UsccError::Character { field, .. }
            | UsccError::Authority { field, .. }
            | UsccError::EntityType { field, .. }
            | UsccError::Region { field, .. }
            | UsccError::Check { field, .. } => field,
        }
    }
}

/// The check character for the first 17 characters (which must be in the alphabet).
pub fn check_character(first17: &[u8]) -> Option<char> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (c, w) in first17.iter().zip(WEIGHTS) {
        sum += value(*c)? * w;
    }
    let check = (31 - sum % 31) % 31;
    Some(ALPHABET[check as usize] as char)
}

fn value(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

/// Validates a code against every rule. On success the code is known to be
/// well-formed and to carry the right check character.
pub fn validate(code: &str, field: &'static str) -> Result<(), UsccError> {
    validate_structure(code, field)?;
    let b = code.as_bytes();
    // validate_structure guarantees 17 alphabet characters.
    let expected = check_character(&b[..17]).unwrap_or('?');
    if b[17] as char != expected {
        return Err(UsccError::Check {
            field,
            found: b[17] as char,
            expected,
        });
    }
    Ok(())
}

/// Every rule except the check character: what an exempted pilot code must still meet.
pub fn validate_structure(code: &str, field: &'static str) -> Result<(), UsccError> {
    let len = code.chars().count();
    if len != 18 {
        return Err(UsccError::Length { field, len });
    }
    for (i, ch) in code.chars().enumerate() {
        if !ch.is_ascii() || value(ch as u8).is_none() {
            return Err(UsccError::Character {
                field,
                ch,
                position: i + 1,
            });
        }
    }
    let b = code.as_bytes();
    let Some(&(_, authority_name, types)) = AUTHORITIES.iter().find(|(a, _, _)| *a == b[0]) else {
        return Err(UsccError::Authority {
            field,
            ch: b[0] as char,
        });
    };
    if !types.contains(&b[1]) {
        return Err(UsccError::EntityType {
            field,
            ch: b[1] as char,
            authority: b[0] as char,
            authority_name,
        });
    }
    let region = &code[2..8];
    if region != NATIONAL_AUTHORITY && RegionCode::parse(region, field).is_err() {
        return Err(UsccError::Region {
            field,
            region: region.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently (Python, weights 3^i mod 31) for codes built from the layout.
    const VALID: &[&str] = &[
        "91350100M000100Y43",
        "91110000100000000R",
        "12310000425010117M",
        "52620000MJX000001F",
    ];

    /// Published codes of real organisations, one per registration level and authority
    /// that could be confirmed here (each printed on the organisation's business licence
    /// and in the national enterprise credit information publicity system; the check
    /// character of every one verifies, which a misremembered code does with probability
    /// 1/31). Where no published code of an authority could be confirmed offline, the
    /// table above holds codes constructed from the layout.
    const PUBLISHED: &[(&str, &str, &str)] = &[
        // The standard's own worked example (GB 32100-2015, annex).
        (
            "91350100M000100Y43",
            "GB 32100-2015 example",
            "market regulation, prefecture (福州市)",
        ),
        // National registration authority (positions 3-8 = 100000).
        (
            "91100000100003962T",
            "中国工商银行股份有限公司",
            "market regulation, national",
        ),
        (
            "911000001000013428",
            "中国银行股份有限公司",
            "market regulation, national",
        ),
        (
            "12100000400000624D",
            "清华大学",
            "establishment administration (public institution), national",
        ),
        (
            "12100000400002259P",
            "北京大学",
            "establishment administration (public institution), national",
        ),
        // Provincial level.
        (
            "911100001000044477",
            "中国建设银行股份有限公司",
            "market regulation, province (北京市)",
        ),
        (
            "911100001000054748",
            "中国农业银行股份有限公司",
            "market regulation, province (北京市)",
        ),
        (
            "91110000710926094P",
            "中国石油化工股份有限公司",
            "market regulation, province (北京市)",
        ),
        (
            "911100007109250324",
            "中国移动通信集团有限公司",
            "market regulation, province (北京市)",
        ),
        (
            "91110000100010433L",
            "中国石油天然气集团有限公司",
            "market regulation, province (北京市)",
        ),
        (
            "9131000010000595XD",
            "交通银行股份有限公司",
            "market regulation, province (上海市)",
        ),
        // Prefecture level.
        (
            "91330100716105852F",
            "阿里巴巴（中国）有限公司",
            "market regulation, prefecture (杭州市)",
        ),
        (
            "9144030071526726XG",
            "腾讯科技（深圳）有限公司",
            "market regulation, prefecture (深圳市)",
        ),
        (
            "914403001922038216",
            "华为技术有限公司",
            "market regulation, prefecture (深圳市)",
        ),
        (
            "91440300100012316L",
            "中国平安保险（集团）股份有限公司",
            "market regulation, prefecture (深圳市)",
        ),
        (
            "9144030010001686XA",
            "招商银行股份有限公司",
            "market regulation, prefecture (深圳市)",
        ),
        (
            "91440300192317458F",
            "比亚迪股份有限公司",
            "market regulation, prefecture (深圳市)",
        ),
        // County level.
        (
            "91110108551385082Q",
            "小米科技有限责任公司",
            "market regulation, county (北京市海淀区)",
        ),
    ];

    #[test]
    fn accepts_valid_codes() {
        for c in VALID {
            assert_eq!(validate(c, "subject.uscc"), Ok(()), "{c}");
        }
    }

    #[test]
    fn accepts_every_published_code_at_every_registration_level() {
        for (code, name, level) in PUBLISHED {
            assert_eq!(
                validate(code, "subject.uscc"),
                Ok(()),
                "{name} ({level}): {code}"
            );
        }
    }

    #[test]
    fn wrong_check_character_names_expected() {
        let e = validate("91350100M000100Y44", "subject.uscc").unwrap_err();
        assert_eq!(
            e.to_string(),
            "subject.uscc: check character is '4', expected '3' (GB 32100-2015)"
        );
    }

    #[test]
    fn every_single_character_substitution_in_the_body_is_caught() {
        // A weighted sum mod a prime with non-zero weights catches every single substitution.
        let good = VALID[0].as_bytes();
        for pos in 0..17 {
            for &c in ALPHABET.iter() {
                if c == good[pos] {
                    continue;
                }
                let mut b = good.to_vec();
                b[pos] = c;
                let s = String::from_utf8(b).unwrap();
                assert!(validate(&s, "u").is_err(), "{s}");
            }
        }
    }

    #[test]
    fn structural_rules() {
        assert!(matches!(
            validate("9135010", "u"),
            Err(UsccError::Length { len: 7, .. })
        ));
        assert!(matches!(
            validate("91350100M000100I43", "u"),
            Err(UsccError::Character {
                ch: 'I',
                position: 16,
                ..
            })
        ));
        assert!(matches!(
            validate("Z1350100M000100Y43", "u"),
            Err(UsccError::Character { .. })
        ));
        assert!(matches!(
            validate("B1350100M000100Y43", "u"),
            Err(UsccError::Authority { ch: 'B', .. })
        ));
        assert!(matches!(
            validate("94350100M000100Y43", "u"),
            Err(UsccError::EntityType { ch: '4', .. })
        ));
        assert!(matches!(
            validate("91990100M000100Y43", "u"),
            Err(UsccError::Region { .. })
        ));
        // Only the whole country's code is national; other 10xxxx codes are nothing.
        assert!(matches!(
            validate_structure("91100100M000100Y43", "u"),
            Err(UsccError::Region { .. })
        ));
        assert!(matches!(
            validate("91350100M000100Y4中", "u"),
            Err(UsccError::Character { .. })
        ));
    }
}
