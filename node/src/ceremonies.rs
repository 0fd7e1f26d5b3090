//! This member's part in a person-key ceremony, driven over the members' connections
//! (docs/privacy.md, "Key lifecycle"; docs/operator.md, "Person keys").
//!
//! Every member's operator starts the same plan (`POST /v1/admin/person-key-ceremony`);
//! the network task sends what [`Ceremonies::due`] gives to the member it is for, over
//! `/credfed/person-key-ceremony/1`, until that member takes or holds it, and hands each
//! message it receives to [`Ceremonies::receive`] with the region the sending peer
//! authenticated as. A message for a ceremony this member has not started yet is held
//! (bounded) until its operator starts it. When the ceremony ends, the new share is
//! written beside the current one, never over it, and the public shares every member
//! computed are written for the federation authority, which puts them into the next
//! manifest; nodes use the new share once they run with that manifest.
//!
//! A repair (a lost share given back, or a new member's first share) runs the same way
//! with helpers and the member being repaired as parties ([`credfed_protocol::oprf::repair`]).
//!
//! Ceremony state lives in memory: a node restarted during a ceremony has lost its part,
//! and the members start a new plan (another label).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use credfed_protocol::crypto::Hash256;
use credfed_protocol::ids::RegionCode;
use credfed_protocol::manifest::PersonKeyShares;
use credfed_protocol::oprf::ShareKey;
use credfed_protocol::oprf::ceremony::{
    Ceremony, CeremonyKind, CeremonyMessage, CeremonyPlan, CeremonyReply,
};
use credfed_protocol::oprf::repair::{Repair, RepairOutcome, RepairPlan};

/// What a member's operator starts.
#[derive(Debug, Clone)]
pub enum Plan {
    /// A key generation or a refresh.
    Keys(CeremonyPlan),
    /// A repair or an enrolment.
    Repair(RepairPlan),
}

/// This member's state machine in the running ceremony (one at a time per node, so the
/// size difference between the variants costs nothing).
#[allow(clippy::large_enum_variant)]
enum Part {
    Keys(Ceremony),
    Repair(Repair),
}

/// What a finished part leaves.
enum Ended {
    /// A new share and the public shares listing it.
    Share(ShareKey, PersonKeyShares),
    /// A helper's part is over; nothing to write.
    Helped,
}

impl Part {
    fn id(&self) -> Hash256 {
        match self {
            Part::Keys(c) => c.id(),
            Part::Repair(r) => r.id(),
        }
    }

    fn label(&self) -> &str {
        match self {
            Part::Keys(c) => &c.plan().label,
            Part::Repair(r) => &r.plan().label,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Part::Keys(c) => match c.plan().kind {
                CeremonyKind::Generate => "generate",
                CeremonyKind::Refresh { .. } => "refresh",
            },
            Part::Repair(_) => "repair",
        }
    }

    fn region_of(&self, index: u16) -> Option<RegionCode> {
        match self {
            Part::Keys(c) => c.plan().region_of(index),
            Part::Repair(r) => r.plan().region_of(index),
        }
    }

    /// Every party, as (region, index).
    fn parties(&self) -> Vec<(RegionCode, u16)> {
        match self {
            Part::Keys(c) => c
                .plan()
                .members
                .iter()
                .map(|m| (m.region, m.index))
                .collect(),
            Part::Repair(r) => r.plan().parties().map(|m| (m.region, m.index)).collect(),
        }
    }

    /// (first counter, second counter) for the status: round-1 and round-2 packages,
    /// or a repair's deltas or sigmas held.
    fn progress(&self) -> (usize, usize) {
        match self {
            Part::Keys(c) => c.progress(),
            Part::Repair(r) => (r.progress().0, 0),
        }
    }

    fn waiting_for(&self) -> Vec<u16> {
        match self {
            Part::Keys(c) => c.waiting_for(),
            Part::Repair(r) => r.waiting_for(),
        }
    }

    /// Takes a message in; returns the messages that became due.
    fn receive(&mut self, message: CeremonyMessage) -> Result<Vec<(u16, CeremonyMessage)>, String> {
        match self {
            Part::Keys(c) => {
                c.receive(message).map_err(|e| e.to_string())?;
                Ok(c.round2().map_err(|e| e.to_string())?.unwrap_or_default())
            }
            Part::Repair(r) => Ok(r
                .receive(message)
                .map_err(|e| e.to_string())?
                .into_iter()
                .collect()),
        }
    }

    fn finish(&self, budget: (u32, u32)) -> Result<Option<Ended>, String> {
        match self {
            Part::Keys(c) => Ok(c
                .finish(budget.0, budget.1)
                .map_err(|e| e.to_string())?
                .map(|(share, listed)| Ended::Share(share, listed))),
            Part::Repair(r) => Ok(r.finish().map_err(|e| e.to_string())?.map(|o| match o {
                RepairOutcome::Helped => Ended::Helped,
                RepairOutcome::Share(share, listed) => Ended::Share(share, listed),
            })),
        }
    }
}

/// Messages of ceremonies not started here that are held at once: two per member of the
/// largest federation (512 members), each at most
/// [`credfed_protocol::oprf::ceremony::MAX_MESSAGE_BYTES`] (and [`MAX_HELD_PER_MEMBER`]
/// from any one member).
pub const MAX_HELD_MESSAGES: usize = 1024;

/// Held messages from one member at most: a round-1 and a round-2 message of a
/// generation or refresh, or a repair's delta and sigma, for two plans at once. A member
/// flooding messages of made-up ceremonies fills only its own allowance.
pub const MAX_HELD_PER_MEMBER: usize = 4;

/// Bytes of held messages at most (a round-1 package of a 31-member federation with
/// t = 16 is about 600 bytes).
pub const MAX_HELD_BYTES: usize = 8 * 1024 * 1024;

/// Wait before sending a message again after the member could not be reached or
/// refused it.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// A message waiting to reach its member.
#[derive(Debug)]
struct Outgoing {
    message: CeremonyMessage,
    in_flight: bool,
    next_try: Instant,
    tries: u32,
    last_error: Option<String>,
}

pub use credfed_client::{CeremonyResult, CeremonyState, CeremonyStatus, Undelivered};

struct Running {
    ceremony: Part,
    threshold: u16,
    started_ms: i64,
    /// (member index, round) → message.
    outbox: BTreeMap<(u16, u8), Outgoing>,
    state: CeremonyState,
    error: Option<String>,
    share_file: Option<PathBuf>,
    person_key: Option<PersonKeyShares>,
    person_key_file: Option<PathBuf>,
}

/// A message that came before this member started its ceremony.
struct Held {
    sender: RegionCode,
    message: CeremonyMessage,
    bytes: usize,
}

/// Identifies a message handed to the network task, so that its outcome comes back.
pub type Delivery = (Hash256, u16, u8);

/// This member's ceremonies (one at a time).
pub struct Ceremonies {
    me: RegionCode,
    /// Where new shares and public shares are written.
    dir: PathBuf,
    /// This member's current share (for a refresh, or to help a repair).
    share: Option<std::sync::Arc<ShareKey>>,
    /// The manifest's public shares.
    shares: Option<PersonKeyShares>,
    /// Budget written into the public shares a ceremony ends with.
    budget: (u32, u32),
    running: Option<Running>,
    held: BTreeMap<(Hash256, u16, u8), Held>,
    held_bytes: usize,
}

/// Why a ceremony could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The plan or this member's part in it is wrong.
    #[error("{0}")]
    Plan(String),
}

impl Ceremonies {
    /// `dir` is where the share in use lives (the new share goes beside it).
    pub fn new(
        me: RegionCode,
        dir: PathBuf,
        share: Option<std::sync::Arc<ShareKey>>,
        shares: Option<PersonKeyShares>,
        budget: (u32, u32),
    ) -> Ceremonies {
        Ceremonies {
            me,
            dir,
            share,
            shares,
            budget,
            running: None,
            held: BTreeMap::new(),
            held_bytes: 0,
        }
    }

    /// The manifest's public shares (refreshed or repaired by a ceremony).
    pub fn current_shares(&self) -> Option<&PersonKeyShares> {
        self.shares.as_ref()
    }

    /// Whether this member holds a share of the manifest's key.
    pub fn holds_share(&self) -> bool {
        self.share.is_some()
    }

    /// Starts this member's part of `plan` (replacing any earlier ceremony); messages
    /// other members sent for it before are taken in now.
    pub fn start(&mut self, plan: Plan, now_ms: i64) -> Result<CeremonyStatus, StartError> {
        let rng = &mut credfed_client::keys::SystemRng;
        let (ceremony, first, threshold) = match plan {
            Plan::Keys(plan) => {
                let current = match (&plan.kind, &self.share, &self.shares) {
                    (CeremonyKind::Refresh { .. }, Some(share), Some(shares)) => {
                        Some((share.as_ref(), shares))
                    }
                    (CeremonyKind::Refresh { .. }, _, _) => {
                        return Err(StartError::Plan(
                            "this member holds no share of a current person key, so it cannot refresh one; have it repaired first, or take part in a new generation".into(),
                        ));
                    }
                    (CeremonyKind::Generate, _, _) => None,
                };
                let threshold = plan.threshold;
                let (c, round1) = Ceremony::start(plan, self.me, current, rng)
                    .map_err(|e| StartError::Plan(e.to_string()))?;
                let others: Vec<(u16, CeremonyMessage)> = c
                    .plan()
                    .members
                    .iter()
                    .filter(|m| m.index != c.me())
                    .map(|m| (m.index, round1.clone()))
                    .collect();
                (Part::Keys(c), others, threshold)
            }
            Plan::Repair(plan) => {
                let Some(shares) = &self.shares else {
                    return Err(StartError::Plan(
                        "the manifest this node runs has no person_key to repair".into(),
                    ));
                };
                let (r, deltas) = Repair::start(plan, self.me, self.share.as_deref(), shares, rng)
                    .map_err(|e| StartError::Plan(e.to_string()))?;
                (Part::Repair(r), deltas, shares.threshold)
            }
        };
        let now = Instant::now();
        let mut outbox = BTreeMap::new();
        for (to, message) in first {
            outbox.insert((to, message.round()), outgoing(message, now));
        }
        tracing::info!(ceremony = %ceremony.id(), kind = ceremony.kind(), label = %ceremony.label(), parties = ceremony.parties().len(), "person-key ceremony started");
        self.running = Some(Running {
            threshold,
            ceremony,
            started_ms: now_ms,
            outbox,
            state: CeremonyState::Running,
            error: None,
            share_file: None,
            person_key: None,
            person_key_file: None,
        });
        // Messages held for this ceremony.
        let id = self.running.as_ref().map(|r| r.ceremony.id());
        let held: Vec<(Hash256, u16, u8)> = self
            .held
            .keys()
            .filter(|(c, _, _)| Some(*c) == id)
            .copied()
            .collect();
        for key in held {
            if let Some(h) = self.held.remove(&key) {
                self.held_bytes -= h.bytes;
                let _ = self.take(h.sender, h.message);
            }
        }
        // Anything held for other ceremonies is stale now.
        self.held.clear();
        self.held_bytes = 0;
        self.status()
            .ok_or_else(|| StartError::Plan("the ceremony ended as it started".into()))
    }

    /// The running or last ceremony's status.
    pub fn status(&self) -> Option<CeremonyStatus> {
        let r = self.running.as_ref()?;
        let (round1_held, round2_held) = r.ceremony.progress();
        let mut undelivered: BTreeMap<u16, Undelivered> = BTreeMap::new();
        for ((to, _), o) in &r.outbox {
            let Some(region) = r.ceremony.region_of(*to) else {
                continue;
            };
            let u = undelivered.entry(*to).or_insert(Undelivered {
                region,
                messages: 0,
                last_error: None,
            });
            u.messages += 1;
            if o.last_error.is_some() {
                u.last_error = o.last_error.clone();
            }
        }
        Some(CeremonyStatus {
            ceremony: r.ceremony.id(),
            member: self.me,
            kind: r.ceremony.kind().into(),
            label: r.ceremony.label().into(),
            threshold: r.threshold,
            members: r
                .ceremony
                .parties()
                .into_iter()
                .map(|(region, _)| region)
                .collect(),
            state: r.state.clone(),
            started_ms: r.started_ms,
            round1_held,
            round2_held,
            waiting_for: if r.state == CeremonyState::Running {
                r.ceremony
                    .waiting_for()
                    .into_iter()
                    .filter_map(|i| r.ceremony.region_of(i))
                    .collect()
            } else {
                Vec::new()
            },
            undelivered: undelivered.into_values().collect(),
            error: r.error.clone(),
            share_file: r.share_file.clone(),
            person_key: r.person_key.clone(),
            person_key_file: r.person_key_file.clone(),
        })
    }

    /// A message from the member `sender` (as its connection authenticated it).
    pub fn receive(&mut self, sender: RegionCode, message: CeremonyMessage) -> CeremonyReply {
        let (id, _) = message.ceremony_and_sender();
        match &self.running {
            Some(r) if r.ceremony.id() == id => self.take(sender, message),
            _ => self.hold(sender, message),
        }
    }

    fn hold(&mut self, sender: RegionCode, message: CeremonyMessage) -> CeremonyReply {
        let (id, from) = message.ceremony_and_sender();
        let key = (id, from, message.round());
        let bytes = message.package().len() + 80;
        if let Some(h) = self.held.get(&key) {
            return if h.sender == sender && h.message == message {
                CeremonyReply::Held
            } else {
                CeremonyReply::Refused(format!(
                    "another round-{} message of member {from} is already held for ceremony {id}",
                    message.round()
                ))
            };
        }
        let from_sender = self.held.values().filter(|h| h.sender == sender).count();
        if from_sender >= MAX_HELD_PER_MEMBER {
            return CeremonyReply::Refused(format!(
                "{from_sender} messages from {sender} of ceremonies not started here are held already (limit {MAX_HELD_PER_MEMBER} per member); this member's operator must start the ceremony"
            ));
        }
        if self.held.len() >= MAX_HELD_MESSAGES || self.held_bytes + bytes > MAX_HELD_BYTES {
            return CeremonyReply::Refused(format!(
                "{} messages of ceremonies not started here are held already (limit {MAX_HELD_MESSAGES}); this member's operator must start the ceremony",
                self.held.len()
            ));
        }
        self.held_bytes += bytes;
        self.held.insert(
            key,
            Held {
                sender,
                message,
                bytes,
            },
        );
        CeremonyReply::Held
    }

    /// Takes a message into the running ceremony, then moves it on as far as it goes.
    fn take(&mut self, sender: RegionCode, message: CeremonyMessage) -> CeremonyReply {
        let Some(r) = self.running.as_mut() else {
            return CeremonyReply::Refused("no ceremony is running here".into());
        };
        let (_, from) = message.ceremony_and_sender();
        if r.ceremony.region_of(from) != Some(sender) {
            return CeremonyReply::Refused(format!(
                "{sender} sent a message as member {from}, which the plan gives to {}",
                r.ceremony
                    .region_of(from)
                    .map_or_else(|| "no one".to_string(), |r| r.to_string())
            ));
        }
        match r.state {
            CeremonyState::Failed => {
                return CeremonyReply::Refused(format!(
                    "this member's ceremony failed: {}",
                    r.error.clone().unwrap_or_default()
                ));
            }
            CeremonyState::Done => return CeremonyReply::Taken,
            CeremonyState::Running => {}
        }
        match r.ceremony.receive(message) {
            Ok(due) => {
                let now = Instant::now();
                for (to, message) in due {
                    r.outbox
                        .insert((to, message.round()), outgoing(message, now));
                }
            }
            Err(e) => {
                let why = self.named(&e);
                self.fail(why.clone());
                return CeremonyReply::Refused(why);
            }
        }
        if let Err(why) = self.advance() {
            self.fail(why.clone());
            return CeremonyReply::Refused(why);
        }
        CeremonyReply::Taken
    }

    /// "member 3: …" → "member 3 (620000): …", so that operators see the region.
    fn named(&self, text: &str) -> String {
        let Some(r) = &self.running else {
            return text.to_string();
        };
        let mut out = text.to_string();
        for (region, index) in r.ceremony.parties() {
            out = out.replace(
                &format!("member {index}:"),
                &format!("member {index} ({region}):"),
            );
        }
        out
    }

    fn fail(&mut self, why: String) {
        if let Some(r) = self.running.as_mut() {
            tracing::error!(ceremony = %r.ceremony.id(), %why, "person-key ceremony failed");
            r.state = CeremonyState::Failed;
            r.error = Some(why);
            r.outbox.clear();
        }
    }

    /// Ends this member's part once it has everything: writes a new share, or notes
    /// that a helper's work is over.
    fn advance(&mut self) -> Result<(), String> {
        let budget = self.budget;
        let dir = self.dir.clone();
        let me = self.me;
        let Some(r) = self.running.as_mut() else {
            return Ok(());
        };
        match r.ceremony.finish(budget)? {
            None => Ok(()),
            Some(Ended::Helped) => {
                tracing::info!(ceremony = %r.ceremony.id(), "person-key repair: this helper's part is done");
                r.state = CeremonyState::Done;
                Ok(())
            }
            Some(Ended::Share(share, person_key)) => {
                let (share_file, person_key_file) = write_result(
                    &dir,
                    r.ceremony.id(),
                    r.ceremony.label(),
                    me,
                    &share,
                    &person_key,
                )
                .map_err(|e| format!("writing the new share: {e}"))?;
                tracing::info!(ceremony = %r.ceremony.id(), share_file = %share_file.display(), "person-key ceremony done: new share written");
                r.state = CeremonyState::Done;
                r.share_file = Some(share_file);
                r.person_key = Some(person_key);
                r.person_key_file = Some(person_key_file);
                Ok(())
            }
        }
    }

    /// Messages to send now, each with the member it is for; marked in flight until
    /// [`Ceremonies::delivered`] reports the outcome.
    pub fn due(&mut self, now: Instant) -> Vec<(RegionCode, Delivery, CeremonyMessage)> {
        let Some(r) = self.running.as_mut() else {
            return Vec::new();
        };
        let id = r.ceremony.id();
        let mut out = Vec::new();
        for ((to, round), o) in r.outbox.iter_mut() {
            if o.in_flight || o.next_try > now {
                continue;
            }
            let Some(region) = r.ceremony.region_of(*to) else {
                continue;
            };
            o.in_flight = true;
            o.tries += 1;
            out.push((region, (id, *to, *round), o.message.clone()));
        }
        out
    }

    /// The outcome of sending a message: the member's reply, or why it did not come.
    pub fn delivered(&mut self, delivery: Delivery, outcome: Result<CeremonyReply, String>) {
        let Some(r) = self.running.as_mut() else {
            return;
        };
        let (id, to, round) = delivery;
        if r.ceremony.id() != id {
            return;
        }
        let key = (to, round);
        match outcome {
            Ok(CeremonyReply::Taken) | Ok(CeremonyReply::Held) => {
                r.outbox.remove(&key);
            }
            Ok(CeremonyReply::Refused(why)) | Err(why) => {
                if let Some(o) = r.outbox.get_mut(&key) {
                    tracing::warn!(ceremony = %id, member = to, %why, tries = o.tries, "person-key ceremony message not taken; will retry");
                    o.in_flight = false;
                    o.next_try = Instant::now() + RETRY_AFTER;
                    o.last_error = Some(why);
                }
            }
        }
    }
}

fn outgoing(message: CeremonyMessage, now: Instant) -> Outgoing {
    Outgoing {
        message,
        in_flight: false,
        next_try: now,
        tries: 0,
        last_error: None,
    }
}

/// Writes the new share (0600) and the public shares beside the share in use, named by
/// the ceremony, never over an existing file.
fn write_result(
    dir: &Path,
    id: Hash256,
    label: &str,
    me: RegionCode,
    share: &ShareKey,
    person_key: &PersonKeyShares,
) -> std::io::Result<(PathBuf, PathBuf)> {
    let short: String = id.to_hex().chars().take(16).collect();
    let share_file = dir.join(format!("person-share-{short}.key"));
    let person_key_file = dir.join(format!("person-key-{short}.json"));
    if share_file.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} exists already (this ceremony ended here before); start a new plan with another label",
                share_file.display()
            ),
        ));
    }
    credfed_client::keys::write_secret(&share_file, &share.to_file_text())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let result = CeremonyResult {
        ceremony: id,
        label: label.to_string(),
        written_by: me,
        person_key: person_key.clone(),
    };
    let text = serde_json::to_string_pretty(&result).map_err(std::io::Error::other)?;
    std::fs::write(&person_key_file, text)?;
    Ok((share_file, person_key_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(code: u32) -> RegionCode {
        RegionCode::new(code, "r").unwrap()
    }

    /// Runs the members' drivers against each other through a mailbox, delivering
    /// what `due` gives and reporting the replies, as the network task does.
    fn exchange(members: &mut [Ceremonies], drop_first_to: Option<RegionCode>) {
        let mut dropped = false;
        for _ in 0..20 {
            let mut sent = 0;
            for i in 0..members.len() {
                let sender = members[i].me;
                for (to, delivery, message) in members[i].due(Instant::now() + RETRY_AFTER * 2) {
                    sent += 1;
                    if Some(to) == drop_first_to && !dropped {
                        dropped = true;
                        members[i].delivered(delivery, Err("connection lost".into()));
                        continue;
                    }
                    let j = members.iter().position(|m| m.me == to).unwrap();
                    let reply = members[j].receive(sender, message);
                    members[i].delivered(delivery, Ok(reply));
                }
            }
            if sent == 0 {
                return;
            }
        }
    }

    /// Three members' drivers reach one key; a member that starts late takes the
    /// messages held for it; a lost message is sent again; every member writes its own
    /// share (0600) and the same public shares, never over an existing file.
    #[test]
    fn members_reach_one_key_even_when_one_starts_late_and_a_message_is_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let regions = [region(310000), region(440000), region(620000)];
        let mut members: Vec<Ceremonies> = regions
            .iter()
            .map(|r| {
                let dir = tmp.path().join(r.to_string());
                std::fs::create_dir_all(&dir).unwrap();
                Ceremonies::new(*r, dir, None, None, (10, 5))
            })
            .collect();
        let plan = CeremonyPlan::generate("test", 2, &regions).unwrap();
        members[0].start(Plan::Keys(plan.clone()), 1).unwrap();
        members[1].start(Plan::Keys(plan.clone()), 1).unwrap();
        exchange(&mut members, Some(regions[1]));
        assert_eq!(members[0].status().unwrap().state, CeremonyState::Running);
        assert_eq!(
            members[0].status().unwrap().waiting_for,
            vec![regions[2]],
            "waiting for the member that has not started"
        );
        members[2].start(Plan::Keys(plan.clone()), 2).unwrap();
        exchange(&mut members, None);
        let done: Vec<CeremonyStatus> = members.iter().map(|m| m.status().unwrap()).collect();
        for s in &done {
            assert_eq!(s.state, CeremonyState::Done, "{s:?}");
            assert_eq!(s.person_key, done[0].person_key);
            let text = std::fs::read_to_string(s.share_file.as_ref().unwrap()).unwrap();
            let share = ShareKey::from_file_text(&text).unwrap();
            let listed = s.person_key.as_ref().unwrap();
            assert!(
                listed
                    .shares
                    .iter()
                    .any(|l| l.public_share == share.public())
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(s.share_file.as_ref().unwrap())
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o077, 0, "share file readable by others");
            }
            let result: CeremonyResult = serde_json::from_str(
                &std::fs::read_to_string(s.person_key_file.as_ref().unwrap()).unwrap(),
            )
            .unwrap();
            assert_eq!(Some(result.person_key), s.person_key);
        }
        // The files of an ended ceremony are never written over.
        let s = &done[0];
        let share = ShareKey::from_file_text(
            &std::fs::read_to_string(s.share_file.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        let err = write_result(
            &members[0].dir,
            s.ceremony,
            "test",
            regions[0],
            &share,
            s.person_key.as_ref().unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    }

    /// A member that sends as another member's index is refused; one that equivocates
    /// fails the ceremony naming it; held messages are bounded.
    #[test]
    fn impersonation_and_equivocation_are_refused_and_named() {
        let tmp = tempfile::tempdir().unwrap();
        let regions = [region(310000), region(440000), region(620000)];
        let plan = CeremonyPlan::generate("test", 2, &regions).unwrap();
        let mut a = Ceremonies::new(regions[0], tmp.path().into(), None, None, (10, 5));
        let mut b = Ceremonies::new(regions[1], tmp.path().into(), None, None, (10, 5));
        let mut c = Ceremonies::new(regions[2], tmp.path().into(), None, None, (10, 5));
        a.start(Plan::Keys(plan.clone()), 1).unwrap();
        b.start(Plan::Keys(plan.clone()), 1).unwrap();
        c.start(Plan::Keys(plan.clone()), 1).unwrap();
        let from_b = b.due(Instant::now()).into_iter().next().unwrap().2;
        // 620000 relays 440000's package as its own sender.
        assert!(matches!(
            a.receive(regions[2], from_b.clone()),
            CeremonyReply::Refused(why) if why.contains("member 2")
        ));
        assert_eq!(a.receive(regions[1], from_b.clone()), CeremonyReply::Taken);
        // 440000 starts over (a second round-1 package in the same ceremony).
        let mut b2 = Ceremonies::new(regions[1], tmp.path().into(), None, None, (10, 5));
        b2.start(Plan::Keys(plan.clone()), 2).unwrap();
        let second = b2.due(Instant::now()).into_iter().next().unwrap().2;
        match a.receive(regions[1], second) {
            CeremonyReply::Refused(why) => assert!(why.contains("440000"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.status().unwrap().state, CeremonyState::Failed);
        assert!(
            a.status()
                .unwrap()
                .error
                .unwrap()
                .contains("member 2 (440000)")
        );

        // Held messages: a member flooding made-up ceremonies fills only its own
        // allowance; another member's message is still held.
        let mut idle = Ceremonies::new(regions[0], tmp.path().into(), None, None, (10, 5));
        let mut held = 0;
        for label in 0..20 {
            let p = CeremonyPlan::generate(&format!("p{label}"), 2, &regions).unwrap();
            let mut x = Ceremonies::new(regions[1], tmp.path().into(), None, None, (10, 5));
            x.start(Plan::Keys(p), 1).unwrap();
            let m = x.due(Instant::now()).into_iter().next().unwrap().2;
            if idle.receive(regions[1], m) == CeremonyReply::Held {
                held += 1;
            }
        }
        assert_eq!(held, MAX_HELD_PER_MEMBER);
        let p = CeremonyPlan::generate("honest", 2, &regions).unwrap();
        let mut x = Ceremonies::new(regions[2], tmp.path().into(), None, None, (10, 5));
        x.start(Plan::Keys(p), 1).unwrap();
        let m = x.due(Instant::now()).into_iter().next().unwrap().2;
        assert_eq!(idle.receive(regions[2], m), CeremonyReply::Held);
    }
}
