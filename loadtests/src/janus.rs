//! The Janus adapter: the same participants and media sessions, signaled through Janus's
//! VideoRoom plugin over its HTTP API (one session for the whole run, events from one long poll
//! dispatched by handle).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::client::{self, FromServer, Link, Opening, Shared, ToServer};
use crate::metrics::ReceiverStats;

/// One Janus session with its long-poll loop.
pub struct JanusSession {
    http: reqwest::Client,
    url: String,
    handles: RefCell<HashMap<u64, mpsc::UnboundedSender<Value>>>,
    next_transaction: Cell<u64>,
}

impl JanusSession {
    /// Creates a session at `base` (`http://host:port/janus`) and starts polling its events.
    pub async fn create(http: reqwest::Client, base: &str) -> anyhow::Result<Rc<JanusSession>> {
        let created = post(&http, base, json!({"janus": "create", "transaction": "c"})).await?;
        let id = created["data"]["id"]
            .as_u64()
            .context("session id from janus")?;
        let session = Rc::new(JanusSession {
            http,
            url: format!("{base}/{id}"),
            handles: RefCell::default(),
            next_transaction: Cell::new(1),
        });
        let poller = Rc::downgrade(&session);
        tokio::task::spawn_local(async move {
            while let Some(s) = poller.upgrade() {
                if s.poll_once().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        let keeper = Rc::downgrade(&session);
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                let Some(s) = keeper.upgrade() else { return };
                let _ = s.call(json!({"janus": "keepalive"})).await;
            }
        });
        Ok(session)
    }

    fn transaction(&self) -> String {
        let t = self.next_transaction.get();
        self.next_transaction.set(t + 1);
        format!("t{t}")
    }

    async fn call(&self, mut body: Value) -> anyhow::Result<Value> {
        body["transaction"] = json!(self.transaction());
        post(&self.http, &self.url, body).await
    }

    async fn poll_once(&self) -> anyhow::Result<()> {
        let events: Value = self
            .http
            .get(format!("{}?maxev=50", self.url))
            .timeout(Duration::from_secs(40))
            .send()
            .await?
            .json()
            .await?;
        let events = match events {
            Value::Array(v) => v,
            one => vec![one],
        };
        for e in events {
            let Some(sender) = e["sender"].as_u64() else {
                continue;
            };
            if let Some(tx) = self.handles.borrow().get(&sender) {
                let _ = tx.send(e);
            }
        }
        Ok(())
    }

    /// Attaches a VideoRoom handle.
    pub async fn attach(self: &Rc<Self>) -> anyhow::Result<Handle> {
        let r = self
            .call(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))
            .await?;
        let id = r["data"]["id"].as_u64().context("handle id from janus")?;
        let (tx, events) = mpsc::unbounded_channel();
        self.handles.borrow_mut().insert(id, tx);
        Ok(Handle {
            session: self.clone(),
            id,
            events,
        })
    }

    /// Ends the session and everything in it.
    pub async fn destroy(&self) {
        let _ = self.call(json!({"janus": "destroy"})).await;
    }
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let r: Value = http
        .post(url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("janus request to {url}"))?
        .json()
        .await?;
    if r["janus"] == "error" {
        bail!("janus error: {}", r["error"]);
    }
    Ok(r)
}

/// A VideoRoom plugin handle.
pub struct Handle {
    session: Rc<JanusSession>,
    id: u64,
    events: mpsc::UnboundedReceiver<Value>,
}

impl Handle {
    /// Sends a plugin message; returns Janus's immediate answer (plugin data for synchronous
    /// requests, an ack for asynchronous ones).
    pub async fn message(&self, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let mut m = json!({"janus": "message", "handle_id": self.id, "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        let r = self.session.call(m).await?;
        if let Some(err) = r["plugindata"]["data"]["error"].as_str() {
            bail!("videoroom: {err}");
        }
        Ok(r)
    }

    /// The next plugin event for this handle, with its SDP if it carries one.
    pub async fn event(&mut self) -> anyhow::Result<(Value, Option<String>)> {
        loop {
            let e = tokio::time::timeout(Duration::from_secs(30), self.events.recv())
                .await
                .context("no event from janus in 30 s")?
                .context("janus session gone")?;
            if e["janus"] == "webrtcup" {
                return Ok((json!({"webrtcup": true}), None));
            }
            if e["janus"] != "event" {
                continue; // media, slowlink, hangup...
            }
            let data = e["plugindata"]["data"].clone();
            if let Some(err) = data["error"].as_str() {
                bail!("videoroom: {err}");
            }
            return Ok((data, e["jsep"]["sdp"].as_str().map(str::to_owned)));
        }
    }
}

/// Creates a VideoRoom for a run: no bitrate cap to speak of, no periodic FIR.
pub async fn create_room(
    session: &Rc<JanusSession>,
    room: u64,
    publishers: usize,
) -> anyhow::Result<()> {
    let h = session.attach().await?;
    let body = json!({
        "request": "create",
        "room": room,
        "publishers": publishers.max(1),
        "bitrate": 2_000_000,
        "fir_freq": 0,
        "audiocodec": "opus",
        "videocodec": "vp8",
        "permanent": false,
    });
    let r = h.message(body, None).await?;
    if r["plugindata"]["data"]["videoroom"] != "created" {
        bail!("room not created: {r}");
    }
    Ok(())
}

/// Feed ids of the room's publishers, by identity, as they become known.
pub type Feeds = watch::Sender<HashMap<String, u64>>;

/// What one Janus participant does.
pub struct JanusSpec {
    /// The room.
    pub room: u64,
    /// Name of this participant (its publisher's display name).
    pub identity: String,
    /// Whether it publishes.
    pub publish: bool,
    /// The publishers it receives.
    pub subscribe_to: Vec<String>,
    /// Local address for media sockets.
    pub bind_ip: IpAddr,
}

/// Runs one participant against Janus until stop: a publisher session and/or a subscriber session
/// (Janus uses one peer connection for each).
pub async fn participant(
    session: Rc<JanusSession>,
    spec: JanusSpec,
    feeds: Rc<Feeds>,
    shared: Arc<Shared>,
    stats: Rc<RefCell<ReceiverStats>>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let publishing = async {
        if !spec.publish {
            return std::future::pending().await;
        }
        let mut h = session.attach().await?;
        let (link, from_tx, mut to_rx) = Link::pair();
        let media = client::media_session(
            Opening::OfferPublishing,
            spec.bind_ip,
            started,
            shared.clone(),
            stats.clone(),
            link,
        );
        let signaling = async {
            let Some(ToServer::Offer(sdp)) = to_rx.recv().await else {
                bail!("the publisher session did not offer");
            };
            let body = json!({"request": "joinandconfigure", "room": spec.room, "ptype": "publisher",
                              "display": spec.identity, "audio": true, "video": true});
            h.message(body, Some(json!({"type": "offer", "sdp": sdp})))
                .await?;
            let mut feed = None;
            loop {
                let (data, jsep) = h.event().await?;
                if let Some(sdp) = jsep {
                    let _ = from_tx.send(FromServer::Answer(sdp));
                }
                if data["videoroom"] == "joined" {
                    feed = Some(data["id"].as_u64().context("publisher id")?);
                }
                // Subscribers may join a feed only once its WebRTC is up.
                if let (true, Some(id)) = (data["webrtcup"] == true, feed) {
                    feeds.send_modify(|f| {
                        f.insert(spec.identity.clone(), id);
                    });
                }
            }
        };
        tokio::select! {
            r = media => r,
            r = signaling => r,
        }
    };
    let subscribing = async {
        if spec.subscribe_to.is_empty() {
            return std::future::pending().await;
        }
        let mut known = feeds.subscribe();
        let wanted = known
            .wait_for(|f| spec.subscribe_to.iter().all(|p| f.contains_key(p)))
            .await?
            .clone();
        let started = Instant::now();
        let mut h = session.attach().await?;
        let streams: Vec<Value> = spec
            .subscribe_to
            .iter()
            .map(|p| json!({"feed": wanted[p]}))
            .collect();
        let (link, from_tx, mut to_rx) = Link::pair();
        let media = client::media_session(
            Opening::AwaitOffer,
            spec.bind_ip,
            started,
            shared.clone(),
            stats.clone(),
            link,
        );
        let signaling = async {
            let body = json!({"request": "join", "room": spec.room, "ptype": "subscriber", "streams": streams});
            h.message(body, None).await?;
            loop {
                tokio::select! {
                    e = h.event() => {
                        let (_, jsep) = e?;
                        if let Some(sdp) = jsep {
                            let _ = from_tx.send(FromServer::Offer(sdp));
                        }
                    }
                    Some(out) = to_rx.recv() => {
                        let ToServer::Answer(sdp) = out else { bail!("a subscriber answers, never offers") };
                        h.message(json!({"request": "start", "room": spec.room}),
                                  Some(json!({"type": "answer", "sdp": sdp}))).await?;
                    }
                }
            }
        };
        tokio::select! {
            r = media => r,
            r = signaling => r,
        }
    };
    let mut stop = shared.stop.clone();
    tokio::select! {
        r = publishing => r,
        r = subscribing => r,
        _ = stop.wait_for(|s| *s) => Ok(()),
    }
}
