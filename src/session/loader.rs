//! Cold VerifyToken lookups, batched. Concurrent requests for sessions the
//! token cache does not hold join one query (`Store::sessions`) instead of
//! each paying a round trip: with SQLite every query is a hop to a
//! connection's thread and back, with PostgreSQL a network round trip, and
//! under load those hops, not the lookups, are the cost.
//!
//! Nothing waits to fill a batch: a lookup that arrives while no query is
//! running goes out alone at once; the ones that arrive while [`LOADERS`]
//! queries are in flight go out together in the next. Each request gets the
//! database's answer for its own id, read no earlier than it asked.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use crate::domain::at_rest::open_user;
use crate::domain::crypto::{ServerKeys, SessionId};
use crate::domain::error::{Error, Result};
use crate::domain::model::{Session, User};
use crate::store::Store;

/// Queries in flight at once (the store pool serves them side by side).
const LOADERS: usize = 4;
/// Most ids one query asks for.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Option<(Session, User)>>>;

#[derive(Clone)]
pub struct SessionLoader {
    requests: mpsc::Sender<(SessionId, Reply)>,
}

impl SessionLoader {
    /// The loader and its tasks (abort them to stop it). `keys` open the
    /// users' phone numbers, once per cold lookup (the cache keeps them
    /// opened).
    pub fn start(store: Arc<dyn Store>, keys: ServerKeys) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (requests, queue) = mpsc::channel(MAX_BATCH * LOADERS * 4);
        let queue = Arc::new(Mutex::new(queue));
        let tasks = (0..LOADERS)
            .map(|_| tokio::spawn(run(store.clone(), keys.clone(), queue.clone())))
            .collect();
        (Self { requests }, tasks)
    }

    /// The session and its user, as the store has them now.
    pub async fn load(&self, id: SessionId) -> Result<Option<(Session, User)>> {
        let (reply, answer) = oneshot::channel();
        let stopped = || Error::internal(anyhow::anyhow!("the session loader stopped"));
        self.requests.send((id, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(store: Arc<dyn Store>, keys: ServerKeys, queue: Arc<Mutex<mpsc::Receiver<(SessionId, Reply)>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            // One loader collects at a time; the others are querying.
            let mut queue = queue.lock().await;
            if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return;
            }
        }
        answer(&*store, &keys, &mut batch).await;
    }
}

async fn answer(store: &dyn Store, keys: &ServerKeys, batch: &mut Vec<(SessionId, Reply)>) {
    // A token verified twice at once is asked for once.
    let ids: Vec<SessionId> = batch
        .iter()
        .map(|(id, _)| *id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    match store.sessions(&ids).await {
        Ok(found) => {
            let found: HashMap<SessionId, (Session, User)> = found
                .into_iter()
                .map(|(s, u)| (s.id, (s, open_user(keys, u))))
                .collect();
            for (id, reply) in batch.drain(..) {
                let _ = reply.send(Ok(found.get(&id).cloned()));
            }
        }
        Err(e) => {
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
