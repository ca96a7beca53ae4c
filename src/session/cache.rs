//! The VerifyToken cache: sessions verified recently, so that the hot path
//! costs a MAC check and a hash lookup instead of a database round trip.
//!
//! Why a cached answer is never wrong by more than [`REVOCATION_BOUND`]:
//! - Only live sessions are cached, and every hit checks expiry again with
//!   the current clock. A hit that would fail is not answered from the cache:
//!   the caller asks the store, which has the last word.
//! - This replica's own writes (revocations, phone, profile, logins)
//!   invalidate at once ([`TokenCache::forget_session`], [`TokenCache::forget_user`]).
//! - Other replicas' writes arrive as [`Change`]s from the store's change
//!   feed (PostgreSQL: LISTEN/NOTIFY sent by triggers inside the writing
//!   transaction). The feed also carries the store's own heartbeats, sent
//!   through the database; hits are served only while a heartbeat sent less
//!   than [`REVOCATION_BOUND`] ago has come back. Notifications arrive in
//!   commit order, so once a heartbeat is back, every change committed before
//!   it was sent has been applied; a feed that dies silently turns the cache
//!   off within the bound instead of serving stale answers.
//! - A store read that raced with an invalidation is returned but not cached
//!   (a [`Ticket`] taken before the read), so a change cannot be overwritten
//!   by the read it overtook.
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::crypto::SessionId;
use crate::domain::model::{Session, User};

/// The longest a revocation (or phone change) made on another replica can go
/// unnoticed by this replica's cache.
pub const REVOCATION_BOUND: Duration = Duration::from_secs(1);

pub use crate::store::{Change, ChangeSink};

/// A cached session with its user. `last_seen_at` moves when this replica
/// records use of the session, so idle expiry stays right between reads.
pub struct Cached {
    pub session: Session,
    pub user: User,
    pub last_seen_at: AtomicI64,
    cached_at: Instant,
}

/// What a cached session of a typical user (openid, unionid, phone, no
/// profile) costs in memory, moka's bookkeeping included: 1,072 to 1,077
/// bytes as measured by `memory_per_entry` below (glibc, 4 threads). The cache holds `capacity` times this many
/// bytes, so `WXAUTH_TOKEN_CACHE_SIZE` is a number of typical sessions and a
/// memory bound at once; sessions with long profile fields count for more.
pub const ENTRY_BYTES: u64 = 1_100;

impl Cached {
    /// Its weight in the cache: the typical entry's measured cost, adjusted
    /// by how much longer or shorter than typical its strings are.
    fn weight(&self) -> u32 {
        let (s, u) = (&self.session, &self.user);
        let strings = [
            Some(&s.user_id),
            Some(&s.app_id),
            Some(&u.user_id),
            Some(&u.app_id),
            Some(&u.openid),
            u.unionid.as_ref(),
            u.phone_number.as_ref(),
            u.country_code.as_ref(),
            u.nickname.as_ref(),
            u.avatar_url.as_ref(),
        ];
        let bytes: usize = strings.into_iter().flatten().map(String::len).sum();
        let weight = (ENTRY_BYTES as usize - TYPICAL_STRING_BYTES).saturating_add(bytes);
        u32::try_from(weight).unwrap_or(u32::MAX)
    }
}

/// The strings of the typical entry [`ENTRY_BYTES`] was measured with:
/// user and app ids twice, openid, unionid, phone, country code.
const TYPICAL_STRING_BYTES: usize = 2 * 28 + 2 * 18 + 28 + 28 + 11 + 2;

impl Cached {
    /// The session as it stands, with this replica's last-seen time.
    pub fn session(&self) -> Session {
        Session {
            last_seen_at: self.last_seen_at.load(Ordering::Relaxed),
            ..self.session.clone()
        }
    }
}

/// When a store read started; see [`TokenCache::insert`].
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    generation: u64,
    at: Instant,
}

pub struct TokenCache {
    entries: moka::sync::Cache<SessionId, Arc<Cached>>,
    /// Users invalidated recently, with when; entries cached before that
    /// are stale. Kept as long as an entry can live.
    stale_users: StaleUsers,
    /// When the newest user mark was made (nanoseconds after `epoch`): an
    /// entry cached after it needs no look into `stale_users`.
    last_user_mark: AtomicU64,
    /// Bumped by every session invalidation: a read that started before one
    /// is not cached. (User invalidations are marks in `stale_users`, so that
    /// the logins of one user do not stop other users' sessions from being cached.)
    generation: AtomicU64,
    /// Nanoseconds after `epoch` until which hits may be served; `u64::MAX`
    /// when there is no other writer (SQLite) and so no feed to wait for.
    fresh_until: AtomicU64,
    epoch: Instant,
    enabled: bool,
}

impl TokenCache {
    /// A cache of at most `capacity` sessions, each kept at most `ttl`.
    /// `capacity` 0 disables it. Hits wait for the change feed's heartbeats
    /// (see the module docs) unless [`TokenCache::no_other_writers`] is called.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(1));
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity.saturating_mul(ENTRY_BYTES))
                .weigher(|_, cached: &Arc<Cached>| cached.weight())
                .time_to_live(ttl)
                .build(),
            stale_users: StaleUsers::new(STALE_USERS_CAPACITY, ttl),
            last_user_mark: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            fresh_until: AtomicU64::new(0),
            epoch: Instant::now(),
            enabled: capacity > 0,
        }
    }

    /// Nobody but this process writes to the store (SQLite): its own
    /// invalidations are all there is, and no heartbeat is waited for.
    pub fn no_other_writers(&self) {
        self.fresh_until.store(u64::MAX, Ordering::Release);
    }

    /// The cached session, if the cache may answer for it now.
    pub fn get(&self, id: &SessionId) -> Option<Arc<Cached>> {
        if !self.enabled || !self.is_fresh() {
            return None;
        }
        let hit = self.entries.get(id)?;
        if self.since_epoch(hit.cached_at) > self.last_user_mark.load(Ordering::Acquire) {
            return Some(hit);
        }
        if self.stale_users.is_stale(&hit.user.user_id, hit.cached_at) {
            self.entries.invalidate(id);
            return None;
        }
        Some(hit)
    }

    /// Take one before reading a session from the store; pass it to [`TokenCache::insert`].
    pub fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.generation.load(Ordering::Acquire),
            at: Instant::now(),
        }
    }

    /// Caches a live session read from the store, unless it changed since
    /// `ticket` was taken (before the read).
    pub fn insert(&self, ticket: Ticket, session: Session, user: User) -> Option<Arc<Cached>> {
        if !self.enabled {
            return None;
        }
        // A user mark later than the ticket makes the entry stale on its
        // first hit. A session invalidation bumps the generation before it
        // removes the entry: seen before the insert, nothing is cached; seen
        // after, the entry is removed again; not seen at all, the removal
        // comes after the insert and wins.
        let cached = Arc::new(Cached {
            last_seen_at: AtomicI64::new(session.last_seen_at),
            session,
            user,
            cached_at: ticket.at,
        });
        let id = cached.session.id;
        let unchanged = || self.generation.load(Ordering::Acquire) == ticket.generation;
        if !unchanged() {
            return None;
        }
        self.entries.insert(id, cached.clone());
        if !unchanged() {
            self.entries.invalidate(&id);
            return None;
        }
        Some(cached)
    }

    pub fn forget_session(&self, id: &SessionId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate(id);
    }

    pub fn forget_user(&self, user_id: &str) {
        let now = Instant::now();
        self.last_user_mark
            .fetch_max(self.since_epoch(now), Ordering::AcqRel);
        self.stale_users.mark(user_id, now);
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }

    /// Applies one change from the store's feed.
    pub fn apply(&self, change: Change) {
        match change {
            Change::Session(id) => self.forget_session(&id),
            Change::User(user_id) => self.forget_user(&user_id),
            Change::All => self.forget_all(),
            Change::Heartbeat { sent } => {
                // A heartbeat vouches for the bound after it was sent, no longer.
                let Some(until) = (sent + REVOCATION_BOUND).checked_duration_since(self.epoch) else {
                    return;
                };
                let until = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
                self.fresh_until.fetch_max(until, Ordering::AcqRel);
            }
        }
    }

    fn is_fresh(&self) -> bool {
        let until = self.fresh_until.load(Ordering::Acquire);
        until == u64::MAX || self.since_epoch(Instant::now()) < until
    }

    /// Entries held (approximate), for metrics.
    pub fn len(&self) -> u64 {
        self.entries.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How many user marks are kept before the oldest give way to one
/// cache-wide mark (see [`StaleUsers`]).
const STALE_USERS_CAPACITY: usize = 100_000;

/// The users invalidated within the last `ttl` (as long as an entry lives),
/// bounded in memory without ever forgetting a mark that still matters: a
/// size-bounded cache would drop marks under a burst of logins and let
/// stale entries answer. When full, marks older than `ttl` are pruned; if
/// that frees nothing, every mark is folded into `floor`, which makes
/// every entry cached before it stale (a cache-wide flush: more store
/// reads, never a stale answer).
struct StaleUsers {
    /// One lock for the marks and the floor, so that a lookup never sees
    /// the marks cleared without the floor that replaced them.
    marks: std::sync::RwLock<Marks>,
    capacity: usize,
    ttl: Duration,
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Default)]
struct Marks {
    by_user: std::collections::HashMap<u64, Instant>,
    /// Entries cached at or before this are stale, whoever their user.
    floor: Option<Instant>,
}

impl StaleUsers {
    fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            marks: Default::default(),
            capacity,
            ttl,
            hasher: Default::default(),
        }
    }

    /// Users are keyed by a hash of their id: a collision only marks
    /// another user stale too, which costs a store read.
    fn key(&self, user_id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(user_id)
    }

    fn mark(&self, user_id: &str, at: Instant) {
        let key = self.key(user_id);
        let mut marks = self.marks.write().unwrap_or_else(|e| e.into_inner());
        let Marks { by_user, floor } = &mut *marks;
        if by_user.len() >= self.capacity && !by_user.contains_key(&key) {
            let cutoff = at.checked_sub(self.ttl);
            by_user.retain(|_, marked| cutoff.is_none_or(|c| *marked > c));
            if by_user.len() >= self.capacity {
                let newest = by_user.values().copied().max().unwrap_or(at).max(at);
                *floor = Some(floor.map_or(newest, |f| f.max(newest)));
                by_user.clear();
                return;
            }
        }
        let entry = by_user.entry(key).or_insert(at);
        *entry = (*entry).max(at);
    }

    /// Whether an entry of `user_id` cached at `cached_at` predates a mark.
    fn is_stale(&self, user_id: &str, cached_at: Instant) -> bool {
        let key = self.key(user_id);
        let marks = self.marks.read().unwrap_or_else(|e| e.into_inner());
        marks.floor.is_some_and(|f| f >= cached_at)
            || marks.by_user.get(&key).is_some_and(|m| *m >= cached_at)
    }
}

impl crate::domain::model::UserChanges for TokenCache {
    fn user_changed(&self, user_id: &str) {
        self.forget_user(user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user_id: &str) -> (Session, User) {
        let session = Session {
            id: SessionId::random(),
            user_id: user_id.into(),
            app_id: "wxapp".into(),
            created_at: 0,
            last_seen_at: 0,
            expires_at: i64::MAX,
            revoked_at: None,
        };
        let user = User {
            user_id: user_id.into(),
            app_id: "wxapp".into(),
            openid: "o1".into(),
            unionid: None,
            phone_number: None,
            country_code: None,
            created_at: 0,
            nickname: None,
            avatar_url: None,
        };
        (session, user)
    }

    fn cache(shared: bool) -> TokenCache {
        let c = TokenCache::new(100, Duration::from_secs(60));
        if !shared {
            c.no_other_writers();
        }
        c
    }

    /// A typical user: the strings of [`TYPICAL_STRING_BYTES`].
    fn typical(i: usize) -> (Session, User) {
        let user_id = format!("usr_{i:024x}");
        let (mut session, mut user) = session(&user_id);
        session.app_id = "wx1234567890abcdef".into();
        user.app_id = session.app_id.clone();
        user.openid = format!("o{i:027}");
        user.unionid = Some(format!("u{i:027}"));
        user.phone_number = Some("13580001111".into());
        user.country_code = Some("86".into());
        (session, user)
    }

    #[test]
    fn a_typical_entry_weighs_the_documented_figure_and_long_profiles_more() {
        let cache = cache(false);
        let (session, user) = typical(1);
        let cached = cache.insert(cache.ticket(), session, user).unwrap();
        assert_eq!(u64::from(cached.weight()), ENTRY_BYTES);
        let (session, mut user) = typical(2);
        user.avatar_url = Some("x".repeat(10_000));
        let cached = cache.insert(cache.ticket(), session, user).unwrap();
        assert_eq!(u64::from(cached.weight()), ENTRY_BYTES + 10_000);
    }

    #[test]
    fn the_cache_holds_capacity_typical_entries_or_fewer_long_ones() {
        let cache = TokenCache::new(100, Duration::from_secs(60));
        cache.no_other_writers();
        for i in 0..300 {
            let (session, mut user) = typical(i);
            user.avatar_url = Some("x".repeat(ENTRY_BYTES as usize));
            cache.insert(cache.ticket(), session, user);
        }
        cache.entries.run_pending_tasks();
        assert!(
            cache.len() <= 50,
            "{} entries of twice the typical weight",
            cache.len()
        );
    }

    /// The figure behind [`ENTRY_BYTES`]: resident memory per typical entry
    /// of a full cache (Linux). Run it alone (allocation sizes do not depend
    /// on the build profile):
    /// `cargo test --lib memory_per_entry -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn memory_per_entry() {
        fn rss_bytes() -> u64 {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
            pages * 4096
        }
        const N: usize = 100_000;
        let cache = TokenCache::new(N as u64, Duration::from_secs(600));
        cache.no_other_writers();
        let before = rss_bytes();
        // From several threads, as tokio's workers insert: each allocates
        // in its own malloc arena, which is part of the true cost.
        const THREADS: usize = 4;
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let cache = &cache;
                scope.spawn(move || {
                    for i in (t..N).step_by(THREADS) {
                        let (session, user) = typical(i);
                        cache.insert(cache.ticket(), session, user);
                    }
                });
            }
        });
        cache.entries.run_pending_tasks();
        let after = rss_bytes();
        println!(
            "{} entries: {} bytes each",
            cache.len(),
            (after - before) / cache.len().max(1)
        );
    }

    #[test]
    fn more_user_marks_than_the_capacity_lose_none() {
        let stale = StaleUsers::new(10, Duration::from_secs(60));
        let cached_at = Instant::now();
        let users: Vec<String> = (0..35).map(|i| format!("usr_{i}")).collect();
        for user in &users {
            stale.mark(user, Instant::now());
        }
        for user in &users {
            assert!(stale.is_stale(user, cached_at), "{user}'s mark was lost");
        }
        // Entries cached after the marks are not stale.
        let later = Instant::now() + Duration::from_millis(1);
        assert!(users.iter().all(|u| !stale.is_stale(u, later)));
        // Nor are users never marked whose entries came after a flush.
        assert!(!stale.is_stale("usr_never", later));
    }

    #[test]
    fn old_user_marks_make_room_for_new_ones_without_a_flush() {
        let ttl = Duration::from_millis(50);
        let stale = StaleUsers::new(4, ttl);
        let old_entry = Instant::now();
        for i in 0..4 {
            stale.mark(&format!("usr_old{i}"), Instant::now());
        }
        std::thread::sleep(ttl * 2);
        stale.mark("usr_new", Instant::now());
        // The old marks expired with the entries they guarded; no flush
        // made an unmarked user's entry stale.
        assert!(stale.marks.read().unwrap().floor.is_none());
        assert!(stale.is_stale("usr_new", old_entry));
        assert!(!stale.is_stale("usr_other", old_entry));
    }

    #[test]
    fn a_cached_session_is_served_until_it_is_forgotten() {
        let c = cache(false);
        let (s, u) = session("usr_1");
        let id = s.id;
        c.insert(c.ticket(), s, u);
        assert!(c.get(&id).is_some());
        c.forget_session(&id);
        assert!(c.get(&id).is_none());
    }

    #[test]
    fn forgetting_a_user_drops_every_session_of_theirs_cached_before() {
        let c = cache(false);
        let (a, u) = session("usr_1");
        let (b, _) = session("usr_1");
        let (other, v) = session("usr_2");
        let ids = [a.id, b.id, other.id];
        c.insert(c.ticket(), a, u.clone());
        c.insert(c.ticket(), b, u.clone());
        c.insert(c.ticket(), other, v);
        c.forget_user("usr_1");
        assert!(c.get(&ids[0]).is_none());
        assert!(c.get(&ids[1]).is_none());
        assert!(c.get(&ids[2]).is_some(), "other users stay cached");
        // Read again after the change: cached again.
        let (again, u) = session("usr_1");
        let id = again.id;
        c.insert(c.ticket(), again, u);
        assert!(c.get(&id).is_some());
    }

    #[test]
    fn a_read_that_raced_with_an_invalidation_is_not_cached() {
        let c = cache(false);
        let (s, u) = session("usr_1");
        let id = s.id;
        let before_read = c.ticket();
        c.forget_session(&id); // the revocation lands while the read is in flight
        assert!(c.insert(before_read, s, u).is_none());
        assert!(c.get(&id).is_none());

        let (s, u) = session("usr_2");
        let id = s.id;
        let before_read = c.ticket();
        c.forget_user("usr_2"); // the phone changes while the read is in flight
        c.insert(before_read, s, u);
        assert!(c.get(&id).is_none());
    }

    #[test]
    fn with_a_shared_store_hits_wait_for_a_recent_heartbeat() {
        let c = cache(true);
        let (s, u) = session("usr_1");
        let id = s.id;
        c.insert(c.ticket(), s, u);
        assert!(
            c.get(&id).is_none(),
            "no heartbeat yet: the feed is not known to be current"
        );
        c.apply(Change::Heartbeat { sent: Instant::now() });
        assert!(c.get(&id).is_some());
        // A heartbeat sent longer ago than the bound does not vouch for now.
        let c = cache(true);
        let (s, u) = session("usr_1");
        let id = s.id;
        c.insert(c.ticket(), s, u);
        // Unconditional: a skipped assertion would pass silently. The
        // monotonic clock counts from boot, so it is never this young.
        let sent = Instant::now()
            .checked_sub(REVOCATION_BOUND + Duration::from_millis(10))
            .expect("a monotonic clock older than the bound");
        c.apply(Change::Heartbeat { sent });
        assert!(c.get(&id).is_none());
    }

    #[test]
    fn a_capacity_of_zero_disables_the_cache() {
        let c = TokenCache::new(0, Duration::from_secs(60));
        c.no_other_writers();
        let (s, u) = session("usr_1");
        let id = s.id;
        assert!(c.insert(c.ticket(), s, u).is_none());
        assert!(c.get(&id).is_none());
    }

    #[test]
    fn feed_changes_apply_like_local_ones() {
        let c = cache(false);
        let (s, u) = session("usr_1");
        let id = s.id;
        c.insert(c.ticket(), s, u);
        c.apply(Change::All);
        assert!(c.get(&id).is_none());
    }
}
