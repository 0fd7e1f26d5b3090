//! Every size limit of the protocol, in one place, each with the reason for its value.
//!
//! Limits are part of the contract: a node that accepted a larger record than its
//! peers would hold something they refuse, so changing one is a protocol change.

/// Upper bound on a single allocation while decoding. No valid structure comes near
/// it; it stops a forged length prefix from reserving gigabytes before the input runs out.
pub const MAX_DECODE_ALLOCATION: usize = 16 * 1024 * 1024;

/// Largest record body. A list entry with its basis, ten related persons and the
/// requested measures is about 2 KiB; 32 KiB leaves room for long legal texts while
/// an envelope still fits a gossipsub message (64 KiB by default) with margin.
pub const MAX_BODY_BYTES: usize = 32 * 1024;

/// Largest envelope: body plus fixed header fields, signatures and the author id.
pub const MAX_ENVELOPE_BYTES: usize = MAX_BODY_BYTES + 1024;

/// Equivocation evidence carries two whole envelopes, so it gets its own body limit;
/// it is the only body allowed to exceed [`MAX_BODY_BYTES`].
pub const MAX_EVIDENCE_BODY_BYTES: usize = 2 * MAX_ENVELOPE_BYTES + 64;

/// Largest signed manifest: 31 provinces plus room for cities that run their own
/// node, each with a handful of addresses.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// Members in one manifest. Mainland China has 31 provincial-level regions; 512
/// leaves room for prefecture-level nodes without letting a manifest grow unbounded.
pub const MAX_MEMBERS: usize = 512;

/// Bootstrap addresses per member.
pub const MAX_ADDRESSES_PER_MEMBER: usize = 16;

/// Longest free-text field (names, reasons, legal basis, notes), in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 4096;

/// Longest short identifier text (document numbers, scheme names, unit codes).
pub const MAX_SHORT_TEXT_BYTES: usize = 128;

/// Related persons on one entry (article 十四: legal representative, principal and
/// directly responsible persons; a large case rarely names more than a few dozen).
pub const MAX_RELATED_PERSONS: usize = 64;

/// Measures named in one entry or action. The catalogue has under a hundred.
pub const MAX_MEASURES: usize = 128;

/// Departments named as implementers in one acknowledgement.
pub const MAX_IMPLEMENTERS: usize = 64;

/// Federation id length: short, printable, part of every signing tag.
pub const MAX_FEDERATION_ID_BYTES: usize = 64;

/// Records in one check answer's evidence. A subject with more than this many
/// records is answered in pages (the answer says it is truncated).
pub const MAX_EVIDENCE_ENVELOPES: usize = 1024;
