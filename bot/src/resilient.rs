//! A bot that comes back on its own, as the web client does: when its session ends
//! (signaling closed, media connection failed) it joins again after a short jittered
//! wait, naming the media node it lost, and keeps trying with a growing wait until a
//! join succeeds. What each session received stays with that session; the bot reports
//! every loss and how long the way back took.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::task::JoinHandle;

use crate::client::{Bot, BotConfig, Received};

/// The first wait before a rejoin, as in the web client (jittered by up to half).
const FIRST_WAIT: Duration = Duration::from_millis(250);
/// The longest wait between attempts.
const MAX_WAIT: Duration = Duration::from_secs(4);
/// One join attempt's limit.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One loss of the media node and the way back.
#[derive(Clone, Debug)]
pub struct Rejoin {
    /// When the session was seen to end, and why.
    pub lost_at: Instant,
    pub why: String,
    pub lost_node: String,
    /// When the new session's media connection was up (None while still trying).
    pub rejoined_at: Option<Instant>,
    pub node: Option<String>,
    /// Failed attempts before it.
    pub failed_attempts: u32,
}

struct State {
    bot: Option<Bot>,
    rejoins: Vec<Rejoin>,
}

pub struct ResilientBot {
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for ResilientBot {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ResilientBot {
    /// Joins (the first join must succeed) and keeps the bot in the meeting from then on.
    pub async fn join(cfg: BotConfig) -> anyhow::Result<Self> {
        let bot = Bot::join(cfg.clone(), JOIN_TIMEOUT).await?;
        let state = Arc::new(Mutex::new(State {
            bot: Some(bot),
            rejoins: Vec::new(),
        }));
        let task = tokio::spawn(keep_joined(cfg, state.clone()));
        Ok(Self { state, task })
    }

    fn with<T>(&self, f: impl FnOnce(&Bot) -> T) -> Option<T> {
        self.state.lock().expect("state").bot.as_ref().map(f)
    }

    /// The current session's participant id (None between sessions).
    pub fn participant_id(&self) -> Option<String> {
        self.with(|b| b.participant_id.clone())
    }

    /// The current session's media node (None between sessions).
    pub fn node_id(&self) -> Option<String> {
        self.with(|b| b.node_id.clone())
    }

    /// What the current session received (empty between sessions).
    pub fn received(&self) -> Received {
        self.with(Bot::received).unwrap_or_default()
    }

    /// Every loss so far, in order.
    pub fn rejoins(&self) -> Vec<Rejoin> {
        self.state.lock().expect("state").rejoins.clone()
    }

    /// Leaves for good.
    pub async fn leave(self) {
        self.task.abort();
        let bot = self.state.lock().expect("state").bot.take();
        if let Some(b) = bot {
            b.leave().await;
        }
    }
}

async fn keep_joined(cfg: BotConfig, state: Arc<Mutex<State>>) {
    loop {
        // Wait for the current session to end.
        let watched = {
            let guard = state.lock().expect("state");
            guard
                .bot
                .as_ref()
                .map(|b| (b.ended_watch(), b.node_id.clone()))
        };
        let Some((mut watch, lost_node)) = watched else {
            return;
        };
        let why = match watch.wait_for(Option::is_some).await {
            Ok(w) => w.clone().unwrap_or_default(),
            Err(_) => "the bot is gone".to_owned(),
        };
        let lost_at = Instant::now();
        {
            let mut s = state.lock().expect("state");
            // The old session goes (its tasks stop when it drops).
            s.bot = None;
            s.rejoins.push(Rejoin {
                lost_at,
                why,
                lost_node: lost_node.clone(),
                rejoined_at: None,
                node: None,
                failed_attempts: 0,
            });
        }
        let mut wait = FIRST_WAIT;
        loop {
            let jitter = rand::rng().random_range(0..=wait.as_millis() as u64 / 2);
            tokio::time::sleep(wait + Duration::from_millis(jitter)).await;
            match Bot::rejoin(cfg.clone(), Some(&lost_node), JOIN_TIMEOUT).await {
                Ok(bot) => {
                    let mut s = state.lock().expect("state");
                    if let Some(r) = s.rejoins.last_mut() {
                        r.rejoined_at = Some(Instant::now());
                        r.node = Some(bot.node_id.clone());
                    }
                    s.bot = Some(bot);
                    break;
                }
                Err(e) => {
                    tracing::info!(error = %format!("{e:#}"), "rejoin failed; trying again");
                    if let Some(r) = state.lock().expect("state").rejoins.last_mut() {
                        r.failed_attempts += 1;
                    }
                    wait = (wait * 2).min(MAX_WAIT);
                }
            }
        }
    }
}
