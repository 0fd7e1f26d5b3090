//! Resident identity numbers (居民身份证号码), GB 11643-1999.
//!
//! 18 characters: 6-digit region of first registration · 8-digit birth date ·
//! 3-digit sequence · ISO 7064 MOD 11-2 check character (0-9 or X).
//!
//! What is accepted is what the standard allows, not what today's division table holds:
//! the region is the one *at first registration*, so counties merged or renamed since
//! keep their old codes (only the provincial-level prefix is checked), and birth dates go
//! back to the 19th century (the standard's own worked example is a person born in 1880).
//! Residence permits of Hong Kong, Macao and Taiwan residents use the same format with
//! the prefixes 81, 82 and 83.

use thiserror::Error;

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";

/// A rule of GB 11643-1999 that a number breaks.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ResidentIdError {
    /// Not 18 characters.
    #[error("{field}: {len} characters, expected 18 (GB 11643-1999)")]
    Length {
        /// Field name.
        field: &'static str,
        /// Characters given.
        len: usize,
    },
    /// A non-digit among the first 17, or a last character other than a digit or X.
    #[error(
        "{field}: character '{ch}' at position {position} is not allowed (digits; X only as the check character) (GB 11643-1999)"
    )]
    Character {
        /// Field name.
        field: &'static str,
        /// The offending character.
        ch: char,
        /// Its 1-based position.
        position: usize,
    },
    /// The first six digits are not a region of mainland China.
    #[error(
        "{field}: address code '{region}' does not start with a provincial-level code (GB 11643-1999 positions 1-6: GB/T 2260, or 81/82/83 for residence permits)"
    )]
    Region {
        /// Field name.
        field: &'static str,
        /// The six digits.
        region: String,
    },
    /// The six digits start with a provincial-level code but are no code GB/T 2260 has
    /// listed.
    #[error(
        "{field}: address code '{code}' is not a code GB/T 2260 has ever listed (GB 11643-1999 positions 1-6: the county of first registration; abolished codes are valid, never-existing ones are not; protocol/data/gbt2260-codes.txt)"
    )]
    AddressCode {
        /// Field name.
        field: &'static str,
        /// The six digits.
        code: String,
    },
    /// Positions 7–14 are not a real date.
    #[error(
        "{field}: birth date '{text}' is not a real date between 1860 and 2199 (GB 11643-1999 positions 7-14)"
    )]
    BirthDate {
        /// Field name.
        field: &'static str,
        /// The eight digits.
        text: String,
    },
    /// Wrong check character.
    #[error(
        "{field}: check character is '{found}', expected '{expected}' (ISO 7064 MOD 11-2, GB 11643-1999)"
    )]
    Check {
        /// Field name.
        field: &'static str,
        /// Character given.
        found: char,
        /// Character the weights give.
        expected: char,
    },
}

impl ResidentIdError {
    /// The field holding the number.
    pub fn field(&self) -> &'static str {
        match self {
            ResidentIdError::Length { field, .. }
            | ResidentIdError::Character { field, .. }
            | ResidentIdError::Region { field, .. }
            | ResidentIdError::AddressCode { field, .. }
            | ResidentIdError::BirthDate { field, .. }
            | ResidentIdError::Check { field, .. } => field,
        }
    }
}

/// Provincial-level prefixes of GB/T 2260 (the 31 of mainland China, and 71 Taiwan),
/// and 81, 82, 83 of the residence permits of Hong Kong, Macao and Taiwan residents.
const PREFIXES: [u32; 35] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83,
];

/// Earliest birth year accepted: the standard's example is born in 1880; nobody alive
/// when numbers were first issued (1985) was born before 1860.
const FIRST_BIRTH_YEAR: u32 = 1860;

/// Latest birth year accepted (no clock here: the federation's lifetime bound).
const LAST_BIRTH_YEAR: u32 = 2199;

/// A real calendar date (Gregorian) in the accepted years.
fn is_birth_date(y: u32, m: u32, d: u32) -> bool {
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (FIRST_BIRTH_YEAR..=LAST_BIRTH_YEAR).contains(&y) && (1..=days).contains(&d)
}

/// The check character for 17 digits.
pub fn check_character(first17: &[u8]) -> Option<char> {
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(c, w)| (c - b'0') as u32 * w)
        .sum();
    Some(CHECK[(sum % 11) as usize] as char)
}

/// Validates a number; a lower-case `x` is refused so that each person has one spelling
/// (and so one keyed hash). Use [`normalise`] on user input first.
pub fn validate(number: &str, field: &'static str) -> Result<(), ResidentIdError> {
    let len = number.chars().count();
    if len != 18 {
        return Err(ResidentIdError::Length { field, len });
    }
    for (i, ch) in number.chars().enumerate() {
        let ok = ch.is_ascii_digit() || (i == 17 && ch == 'X');
        if !ok {
            return Err(ResidentIdError::Character {
                field,
                ch,
                position: i + 1,
            });
        }
    }
    let b = number.as_bytes();
    let digits = |r: std::ops::Range<usize>| number[r].parse::<u32>().unwrap_or(0);
    if !PREFIXES.contains(&digits(0..2)) {
        return Err(ResidentIdError::Region {
            field,
            region: number[0..6].to_owned(),
        });
    }
    if !is_address_code(digits(0..6)) {
        return Err(ResidentIdError::AddressCode {
            field,
            code: number[0..6].to_owned(),
        });
    }
    if !is_birth_date(digits(6..10), digits(10..12), digits(12..14)) {
        return Err(ResidentIdError::BirthDate {
            field,
            text: number[6..14].to_owned(),
        });
    }
    let expected = check_character(&b[..17]).unwrap_or('?');
    if b[17] as char != expected {
        return Err(ResidentIdError::Check {
            field,
            found: b[17] as char,
            expected,
        });
    }
    Ok(())
}

/// The address codes GB/T 2260 has listed (with their source: the file's header).
pub const ADDRESS_CODES: &str = include_str!("../../data/gbt2260-codes.txt");

/// Whether `code` is one of [`ADDRESS_CODES`] (parsed once, then a binary search).
pub fn is_address_code(code: u32) -> bool {
    static CODES: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    CODES
        .get_or_init(|| {
            let mut codes: Vec<u32> = ADDRESS_CODES
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            codes.sort_unstable();
            codes
        })
        .binary_search(&code)
        .is_ok()
}

/// Trims spaces and upper-cases a trailing `x`, the usual typing variants.
pub fn normalise(input: &str) -> String {
    input.trim().to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standards_example_and_others_validate() {
        // 11010519491231002X and 440524188001010014 (born 1880) are the examples printed
        // in GB 11643-1999; 512501… is a code of Sichuan's former Wanxian prefecture
        // (now Chongqing), still carried by the people first registered there.
        for n in [
            "11010519491231002X",
            "440524188001010014",
            "440304200002290014",
            "623001199001011234",
            "512501197001010014",
            "810000199001010019",
        ] {
            assert_eq!(validate(n, "person.id"), Ok(()), "{n}");
        }
    }

    /// GB 11643-1999 positions 1-6 are a GB/T 2260 code: one that never existed is
    /// refused (319999), one abolished long ago is not (310221 上海县, 1992; 512501
    /// 万县), and the list holds every year's codes, not only today's.
    #[test]
    fn gb11643_address_code_is_a_code_gbt2260_has_listed() {
        let with = |code: &str| {
            let first17 = format!("{code}19900101001");
            let check = check_character(first17.as_bytes()).unwrap();
            format!("{first17}{check}")
        };
        for code in ["310221", "512501", "110105", "810000", "830000", "310101"] {
            assert_eq!(validate(&with(code), "person.id"), Ok(()), "{code}");
        }
        for code in ["319999", "110199", "440599"] {
            let err = validate(&with(code), "person.id").unwrap_err();
            assert!(
                matches!(err, ResidentIdError::AddressCode { .. }),
                "{code}: {err}"
            );
            assert!(err.to_string().contains(code), "{err}");
        }
        let listed = ADDRESS_CODES
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count();
        assert!(listed > 6_000, "{listed}");
    }

    #[test]
    fn each_rule_is_named() {
        let f = "person.id";
        assert!(matches!(
            validate("1101051949123100", f),
            Err(ResidentIdError::Length { len: 16, .. })
        ));
        assert!(matches!(
            validate("11010519491231002x", f),
            Err(ResidentIdError::Character {
                ch: 'x',
                position: 18,
                ..
            })
        ));
        assert!(matches!(
            validate("1101051949123X002X", f),
            Err(ResidentIdError::Character { position: 14, .. })
        ));
        assert!(matches!(
            validate("99010519491231002X", f),
            Err(ResidentIdError::Region { .. })
        ));
        assert!(matches!(
            validate("440304200102290014", f),
            Err(ResidentIdError::BirthDate { .. })
        ));
        let e = validate("110105194912310021", f).unwrap_err();
        assert_eq!(
            e.to_string(),
            "person.id: check character is '1', expected 'X' (ISO 7064 MOD 11-2, GB 11643-1999)"
        );
        assert_eq!(normalise(" 11010519491231002x "), "11010519491231002X");
    }
}
