//! Console sessions and login challenges, in memory only (a restart logs everyone out).
//!
//! Bounded: at most [`MAX_SESSIONS`] sessions and [`MAX_CHALLENGES`] open challenges;
//! expired ones are dropped before a new one is counted, and a full table refuses a new
//! login instead of evicting someone else's session.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use credfed_protocol::console::CHALLENGE_BYTES;
use credfed_protocol::crypto::Hash256;
use credfed_protocol::ids::DepartmentId;

/// Sessions held at once (desk staff of one province number in the hundreds).
pub const MAX_SESSIONS: usize = 4_096;
/// Login challenges open at once.
pub const MAX_CHALLENGES: usize = 4_096;
/// How long a challenge may be answered.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(120);
/// Open challenges per client address: one address cannot fill the table and lock
/// every other department out of logging in for [`CHALLENGE_TTL`].
pub const MAX_CHALLENGES_PER_CLIENT: usize = 16;

/// A logged-in department.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub department: DepartmentId,
    /// The token forms and scripts send back with every change (CSRF).
    pub csrf: String,
    /// When it ends, whatever the activity.
    pub expires: Instant,
}

/// Why a table refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableFull {
    /// Too many sessions.
    Sessions,
    /// Too many open challenges.
    Challenges,
    /// Too many open challenges from this client address.
    ChallengesOfClient,
}

/// An open challenge: for which pre-login cookie and department, until when.
#[derive(Debug, Clone)]
struct Challenge {
    client: Option<std::net::IpAddr>,
    prelogin: Hash256,
    department: DepartmentId,
    expires: Instant,
}

/// Sessions by the hash of their cookie token (the table never holds a usable token).
#[derive(Default)]
pub struct Sessions {
    sessions: HashMap<Hash256, Session>,
    challenges: HashMap<[u8; CHALLENGE_BYTES], Challenge>,
}

fn digest(token: &str) -> Hash256 {
    credfed_protocol::crypto::sha256(&[token.as_bytes()])
}

impl Sessions {
    /// Opens a challenge for `department`, bound to the browser's pre-login cookie.
    pub fn open_challenge(
        &mut self,
        challenge: [u8; CHALLENGE_BYTES],
        prelogin: &str,
        department: DepartmentId,
        client: Option<std::net::IpAddr>,
        now: Instant,
    ) -> Result<(), TableFull> {
        self.challenges.retain(|_, c| c.expires > now);
        if self.challenges.len() >= MAX_CHALLENGES {
            return Err(TableFull::Challenges);
        }
        if client.is_some()
            && self
                .challenges
                .values()
                .filter(|c| c.client == client)
                .count()
                >= MAX_CHALLENGES_PER_CLIENT
        {
            return Err(TableFull::ChallengesOfClient);
        }
        self.challenges.insert(
            challenge,
            Challenge {
                client,
                prelogin: digest(prelogin),
                department,
                expires: now + CHALLENGE_TTL,
            },
        );
        Ok(())
    }

    /// Takes a challenge (once): true if it was open for this browser and department.
    pub fn take_challenge(
        &mut self,
        challenge: &[u8; CHALLENGE_BYTES],
        prelogin: &str,
        department: &DepartmentId,
        now: Instant,
    ) -> bool {
        match self.challenges.remove(challenge) {
            Some(c) => {
                c.expires > now && c.prelogin == digest(prelogin) && &c.department == department
            }
            None => false,
        }
    }

    /// Starts a session for `token` (random, made by the caller).
    pub fn start(&mut self, token: &str, session: Session, now: Instant) -> Result<(), TableFull> {
        self.sessions.retain(|_, s| s.expires > now);
        if self.sessions.len() >= MAX_SESSIONS {
            return Err(TableFull::Sessions);
        }
        self.sessions.insert(digest(token), session);
        Ok(())
    }

    /// The live session of `token`; an expired one is dropped.
    pub fn get(&mut self, token: &str, now: Instant) -> Option<Session> {
        let key = digest(token);
        match self.sessions.get(&key) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                self.sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn end(&mut self, token: &str) {
        self.sessions.remove(&digest(token));
    }

    /// Sessions held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// No sessions.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> DepartmentId {
        DepartmentId::parse(s, "d").unwrap()
    }

    fn session(dept: &str, until: Instant) -> Session {
        Session {
            department: d(dept),
            csrf: "c".into(),
            expires: until,
        }
    }

    #[test]
    fn a_challenge_is_taken_once_by_its_browser_and_department() {
        let mut s = Sessions::default();
        let now = Instant::now();
        s.open_challenge([1; 32], "pre", d("110000:a"), None, now)
            .unwrap();
        assert!(!s.take_challenge(&[1; 32], "other", &d("110000:a"), now));
        s.open_challenge([2; 32], "pre", d("110000:a"), None, now)
            .unwrap();
        assert!(!s.take_challenge(&[2; 32], "pre", &d("110000:b"), now));
        s.open_challenge([3; 32], "pre", d("110000:a"), None, now)
            .unwrap();
        assert!(s.take_challenge(&[3; 32], "pre", &d("110000:a"), now));
        assert!(
            !s.take_challenge(&[3; 32], "pre", &d("110000:a"), now),
            "replayed"
        );
        s.open_challenge([4; 32], "pre", d("110000:a"), None, now)
            .unwrap();
        assert!(!s.take_challenge(
            &[4; 32],
            "pre",
            &d("110000:a"),
            now + CHALLENGE_TTL + Duration::from_secs(1)
        ));
    }

    #[test]
    fn one_client_address_cannot_fill_the_challenge_table() {
        let mut s = Sessions::default();
        let now = Instant::now();
        let flood = Some(std::net::IpAddr::from([10, 0, 0, 9]));
        for i in 0..MAX_CHALLENGES_PER_CLIENT {
            s.open_challenge([i as u8; 32], "p", d("110000:a"), flood, now)
                .unwrap();
        }
        assert_eq!(
            s.open_challenge([200; 32], "p", d("110000:a"), flood, now),
            Err(TableFull::ChallengesOfClient)
        );
        let other = Some(std::net::IpAddr::from([10, 0, 0, 10]));
        s.open_challenge([201; 32], "p", d("110000:a"), other, now)
            .unwrap();
        // Expired ones make room again.
        s.open_challenge([202; 32], "p", d("110000:a"), flood, now + CHALLENGE_TTL)
            .unwrap();
    }

    #[test]
    fn sessions_expire_and_the_table_is_bounded() {
        let mut s = Sessions::default();
        let now = Instant::now();
        s.start("t", session("110000:a", now + Duration::from_secs(10)), now)
            .unwrap();
        assert!(s.get("t", now).is_some());
        assert!(s.get("x", now).is_none());
        assert!(s.get("t", now + Duration::from_secs(11)).is_none());
        assert!(s.is_empty(), "an expired session is dropped when seen");
        for i in 0..MAX_SESSIONS {
            s.start(
                &format!("t{i}"),
                session("110000:a", now + Duration::from_secs(10)),
                now,
            )
            .unwrap();
        }
        assert_eq!(
            s.start(
                "one-more",
                session("110000:a", now + Duration::from_secs(10)),
                now
            ),
            Err(TableFull::Sessions)
        );
        // Once they expire, room is made.
        s.start(
            "later",
            session("110000:a", now + Duration::from_secs(100)),
            now + Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        s.end("later");
        assert!(s.get("later", now).is_none());
    }
}
