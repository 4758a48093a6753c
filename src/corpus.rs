//! A seeded, deterministic corpus of labelled logins in the schema of the public RBA dataset
//! (Wiefling et al.): legitimate users with homes (some shared by two, with a family device),
//! devices and habits, plus four kinds of attack, each row's kind named in a last column.
//! Tests, benchmarks and the evaluation of `riskgate replay` feed on it.
#![expect(
    clippy::indexing_slicing,
    reason = "INVARIANT: every index is an id the generator gave into its own tables, or a \
              random number reduced modulo the length of the table it reads"
)]

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::path::Path;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Utc};
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::replay::AttackKind;
use crate::{DAY, HOUR, MINUTE};

/// Shape of a generated corpus.
#[derive(Debug, Clone)]
pub struct CorpusSpec {
    /// Legitimate users in the population.
    pub users: usize,
    /// Rows to write, header excluded.
    pub rows: usize,
    /// Seed of every random choice: the same spec gives the same bytes.
    pub seed: u64,
    /// Start of the time range.
    pub start: DateTime<Utc>,
    /// Length of the time range in days.
    pub days: u32,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        Self {
            users: 10_000,
            rows: 100_000,
            seed: 1,
            // 2026-01-05T00:00:00Z, a Monday.
            start: DateTime::from_timestamp(1_767_571_200, 0).unwrap_or_default(),
            days: 30,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CorpusStats {
    /// Rows written, header excluded.
    pub rows: u64,
    /// Rows of legitimate users.
    pub legitimate: u64,
    /// Rows of attackers (`Is Attack IP` True).
    pub attack_rows: u64,
    /// Rows labelled `Is Account Takeover` True.
    pub takeovers: u64,
    /// Rows per kind.
    pub by_kind: BTreeMap<AttackKind, u64>,
}

/// The header of the RBA dataset, and last the kind of each row, which the dataset does not
/// have (readers of the dataset find columns by name); no column name holds a comma.
const HEADER: &str = "index,Login Timestamp,User ID,Round-Trip Time [ms],IP Address,Country,\
    Region,City,ASN,User Agent String,Browser Name and Version,OS Name and Version,Device Type,\
    Login Successful,Is Attack IP,Is Account Takeover,Attack Kind";
const SUCCESS: u8 = 1;
const TAKEOVER: u8 = 2;

/// A country: ISO code, weight as a home (0: never one), UTC offset, continent, and its
/// ISPs as (ASN, the /16 their customers' addresses come from).
struct Country(&'static str, u64, i64, u8, &'static [(u32, [u8; 2])]);
#[rustfmt::skip]
const COUNTRIES: [Country; 16] = [
    Country("NO", 20, 1, b'E', &[(2119, [84, 208]), (29695, [79, 160]), (12929, [84, 211])]),
    Country("US", 18, -5, b'A', &[(7922, [73, 15]), (7018, [99, 36]), (701, [71, 171])]),
    Country("DE", 12, 1, b'E', &[(3320, [79, 192]), (3209, [88, 64]), (6805, [89, 204])]),
    Country("GB", 10, 0, b'E', &[(2856, [86, 128]), (5089, [82, 4]), (5607, [2, 96])]),
    Country("FR", 8, 1, b'E', &[(3215, [90, 12]), (12322, [82, 64]), (5410, [176, 128])]),
    Country("BR", 7, -3, b'A', &[(28573, [177, 32]), (18881, [187, 10]), (26599, [189, 40])]),
    Country("IN", 7, 5, b'S', &[(55836, [49, 36]), (45609, [106, 192]), (9829, [117, 200])]),
    Country("SE", 5, 1, b'E', &[(3301, [78, 64]), (8473, [85, 24]), (1257, [90, 224])]),
    Country("NL", 5, 1, b'E', &[(1136, [77, 160]), (33915, [84, 24])]),
    Country("JP", 4, 9, b'S', &[(4713, [153, 200]), (2516, [106, 128])]),
    Country("ES", 2, 1, b'E', &[(3352, [83, 32]), (12479, [90, 160])]),
    Country("IT", 2, 1, b'E', &[(3269, [79, 20]), (30722, [2, 32])]),
    Country("VN", 0, 7, b'S', &[(7552, [27, 64]), (45899, [113, 160])]),
    Country("NG", 0, 1, b'F', &[(29465, [102, 89]), (37148, [105, 112])]),
    Country("CN", 0, 8, b'S', &[(4134, [116, 20]), (4837, [112, 224])]),
    Country("ID", 0, 7, b'S', &[(7713, [36, 64]), (17974, [180, 240])]),
];
/// Where impossible-travel attackers sit; one on another continent than the victim is chosen.
const FAR: [&str; 7] = ["VN", "NG", "BR", "CN", "ID", "IN", "US"];
/// Hosters that rent attack infrastructure: country, ASN, /16.
const HOSTERS: [(&str, u32, [u8; 2]); 5] = [
    ("US", 16509, [3, 80]),
    ("US", 14061, [167, 99]),
    ("FR", 16276, [51, 68]),
    ("DE", 24940, [65, 108]),
    ("US", 20473, [45, 77]),
];

/// Platforms: OS as the dataset names it, device type, the platform token inside the UA.
#[rustfmt::skip]
const PLATFORMS: [(&str, &str, &str); 7] = [
    ("Windows 10", "desktop", "Windows NT 10.0; Win64; x64"),
    ("Mac OS X 10.15.7", "desktop", "Macintosh; Intel Mac OS X 10_15_7"),
    ("Linux", "desktop", "X11; Linux x86_64"),
    ("Android 14", "mobile", "Linux; Android 14; SM-S918B"),
    ("Android 13", "mobile", "Linux; Android 13; Pixel 7"),
    ("iOS 17.4", "mobile", "iPhone; CPU iPhone OS 17_4 like Mac OS X"),
    ("iOS 16.6", "tablet", "iPad; CPU OS 16_6 like Mac OS X"),
];
/// Major versions in use per browser family: Chrome, Firefox, Safari, Edge.
const VERSIONS: [&[u32]; 4] = [
    &[114, 116, 118, 119, 120, 121, 122],
    &[115, 119, 120, 121, 122],
    &[15, 16, 17],
    &[118, 120, 121, 122],
];
/// Browsers: family, the platforms it runs on, its user agent and its name in the dataset;
/// `{p}` stands for the platform token, `{v}` for the major version.
#[rustfmt::skip]
const BROWSERS: [(usize, &[usize], &str, &str); 8] = [
    (0, &[0, 1, 2], "Mozilla/5.0 ({p}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36", "Chrome {v}.0.0"),
    (0, &[3, 4], "Mozilla/5.0 ({p}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Mobile Safari/537.36", "Chrome Mobile {v}.0.0"),
    (0, &[5, 6], "Mozilla/5.0 ({p}) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/{v}.0.0.0 Mobile/15E148 Safari/604.1", "Chrome Mobile iOS {v}.0.0"),
    (1, &[0, 2], "Mozilla/5.0 ({p}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0", "Firefox {v}.0"),
    (1, &[1], "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:{v}.0) Gecko/20100101 Firefox/{v}.0", "Firefox {v}.0"),
    (2, &[1], "Mozilla/5.0 ({p}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.0 Safari/605.1.15", "Safari {v}.0"),
    (2, &[5, 6], "Mozilla/5.0 ({p}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.0 Mobile/15E148 Safari/604.1", "Mobile Safari {v}.0"),
    (3, &[0, 1], "Mozilla/5.0 ({p}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0", "Edge {v}.0.0"),
];
/// Clients of credential stuffing: scripts, headless and outdated browsers.
#[rustfmt::skip]
const BOTS: [(&str, &str, &str, &str); 5] = [
    ("python-requests/2.31.0", "Python Requests 2.31", "Other", "bot"),
    ("curl/8.4.0", "curl 8.4.0", "Other", "bot"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/119.0.0.0 Safari/537.36", "HeadlessChrome 119.0.0", "Linux", "desktop"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3945.130 Safari/537.36", "Chrome 79.0.3945", "Windows 10", "desktop"),
    ("Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/58.0.3029.110 Safari/537.36", "Chrome 58.0.3029", "Windows 7", "desktop"),
];

/// A client: user agent and what the dataset says about it.
struct Agent {
    ua: String,
    browser: String,
    os: &'static str,
    device: &'static str,
    /// Index into [`VERSIONS`]; [`BOT`] for the clients of [`BOTS`].
    family: usize,
    /// The same browser on the same platform in its newest version: agents of one browser
    /// and platform are consecutive, oldest first, so an update is a step towards it.
    newest: u16,
}
const BOT: usize = 4;

/// SplitMix64: tiny, fast and plenty for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in `0..n` (0 when `n` is 0), by multiply-shift: no modulo bias worth noting.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64) < p * (1u64 << 53) as f64
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stable hash of a few numbers: per-user facts that must not depend on the order of draws.
fn hash(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x243F_6A88_85A3_08D3, |h, &p| mix(h ^ p).wrapping_add(p))
}

/// A country by weight as a home or destination, never `skip`.
fn pick_country(r: u64, skip: usize) -> usize {
    let weight = |i: usize| if i == skip { 0 } else { COUNTRIES[i].1 };
    let mut x = r % (0..COUNTRIES.len()).map(weight).sum::<u64>().max(1);
    for i in 0..COUNTRIES.len() {
        if x < weight(i) {
            return i;
        }
        x -= weight(i);
    }
    0
}

/// Share of a user's logins that start with a wrong password.
const TYPO: f64 = 0.05;
/// After a wrong password, the chance of another one.
const ANOTHER_TYPO: f64 = 0.25;
/// Most wrong passwords a user types in a row.
const MAX_TYPOS: usize = 4;

/// Percent of users who live with the user before them (one living alone so far): they share
/// its country, ISP and home connection, and log in on its main device now and then.
const HOUSEHOLD_PERCENT: u64 = 20;
/// Share of a household member's logins made on the shared device.
const SHARED_DEVICE_USE: f64 = 0.3;

/// A legitimate user, kept small: everything else derives from hashes of its index.
#[derive(Clone, Copy)]
struct User {
    /// The user whose home this is: the user's own index, or the one it lives with.
    home: u32,
    country: usize,
    isp: usize,
    hour: i64,
    activity: u64,
    devices: [u16; 3],
    ndev: u64,
}

/// One login, 24 bytes so that millions fit: strings live in the tables.
#[derive(Clone, Copy)]
struct Row {
    ts: i64,
    user: u32,
    ip: u32,
    net: u16,
    agent: u16,
    kind: AttackKind,
    flags: u8,
}

/// A network: index into [`COUNTRIES`], ASN, /16.
type Net = (usize, u32, [u8; 2]);

/// Everything a generation run draws from.
struct Gen {
    rng: Rng,
    seed: u64,
    t0: i64,
    span: i64,
    days: u64,
    agents: Vec<Agent>,
    browsers: Vec<u16>,
    bots: Vec<u16>,
    nets: Vec<Net>,
    nets_of: Vec<Vec<u16>>,
    hosting: Vec<u16>,
    users: Vec<User>,
    rows: Vec<Row>,
}

/// Writes `spec.rows` rows (plus the header) in timestamp order.
pub fn generate(spec: &CorpusSpec, out: impl io::Write) -> io::Result<CorpusStats> {
    let mut g = Gen::new(spec);
    let n = spec.rows;
    let (stuffing, spraying, targeted) = (n * 65 / 1000, n * 30 / 1000, n * 125 / 10_000);
    let travel = targeted;
    g.legit(n - stuffing - spraying - targeted - travel);
    let legit_len = g.rows.len();
    g.stuffing(stuffing);
    g.spraying(spraying);
    g.targeted(targeted);
    g.travel(travel, legit_len);
    // Travel can fall short without legitimate successes to follow; the count stays exact.
    g.legit(n - g.rows.len());
    // Stable sort: ties keep generation order, so output stays deterministic.
    g.rows.sort_by_key(|r| r.ts);
    g.write(out)
}

/// Writes the corpus to a file, gzip-compressed when its name ends in `.gz`.
pub fn write_file(spec: &CorpusSpec, path: &Path) -> io::Result<CorpusStats> {
    let mut out = crate::files::create(path)?;
    let stats = generate(spec, &mut out)?;
    out.flush()?;
    Ok(stats)
}

impl Gen {
    fn new(spec: &CorpusSpec) -> Self {
        let agent = |ua: String, browser: String, os, device, family, newest| Agent {
            ua,
            browser,
            os,
            device,
            family,
            newest,
        };
        let mut agents: Vec<Agent> = Vec::new();
        for (ua, browser, os, device) in BOTS {
            let id = agents.len() as u16;
            agents.push(agent(ua.into(), browser.into(), os, device, BOT, id));
        }
        for (family, platforms, ua, browser) in BROWSERS {
            for &p in platforms {
                let (os, device, token) = PLATFORMS[p];
                let newest = (agents.len() + VERSIONS[family].len() - 1) as u16;
                for v in VERSIONS[family] {
                    let fill = |t: &str| t.replace("{p}", token).replace("{v}", &v.to_string());
                    agents.push(agent(fill(ua), fill(browser), os, device, family, newest));
                }
            }
        }
        let ids = (0u16..).take(agents.len());
        let (bots, browsers) = ids.partition(|&i| agents[usize::from(i)].family == BOT);
        let mut nets: Vec<Net> = Vec::new();
        let mut nets_of = Vec::new();
        for (c, country) in COUNTRIES.iter().enumerate() {
            let isps = country.4.iter().map(|&(asn, prefix)| (c, asn, prefix));
            nets_of.push((nets.len() as u16..).take(isps.len()).collect());
            nets.extend(isps);
        }
        let hosting = (nets.len() as u16..).take(HOSTERS.len()).collect();
        for (code, asn, prefix) in HOSTERS {
            let country = COUNTRIES.iter().position(|c| c.0 == code).unwrap_or(0);
            nets.push((country, asn, prefix));
        }
        let days = u64::from(spec.days.max(1));
        let mut g = Gen {
            rng: Rng(spec.seed),
            seed: spec.seed,
            t0: spec.start.timestamp_millis(),
            span: days as i64 * DAY,
            days,
            agents,
            browsers,
            bots,
            nets,
            nets_of,
            hosting,
            users: Vec::new(),
            rows: Vec::with_capacity(spec.rows),
        };
        g.users = (0..spec.users.clamp(1, 1 << 30))
            .map(|u| g.new_user(u as u32))
            .collect();
        g.households();
        g
    }

    /// Moves some users in with the user before them.
    fn households(&mut self) {
        for u in 1..self.users.len() {
            let host = self.users[u - 1];
            let alone = host.home as usize == u - 1;
            if alone && hash(&[self.seed, u as u64, 5]) % 100 < HOUSEHOLD_PERCENT {
                let user = &mut self.users[u];
                user.home = host.home;
                user.country = host.country;
                user.isp = host.isp;
            }
        }
    }

    fn new_user(&mut self, home: u32) -> User {
        let country = pick_country(self.rng.next(), usize::MAX);
        let isp = self.rng.below(self.nets_of[country].len() as u64) as usize;
        let devices = [(); 3].map(|_| self.rng.pick(&self.browsers));
        // Activity is heavy-tailed: most people log in monthly or less, a few every day.
        let hour = 8 + self.rng.below(13) as i64;
        let activity = [1, 1, 1, 1, 2, 4, 8, 16][self.rng.below(8) as usize];
        let ndev = [1, 1, 2, 2, 3][self.rng.below(5) as usize];
        User {
            home,
            country,
            isp,
            hour,
            activity,
            devices,
            ndev,
        }
    }

    /// The time `offset` ms into the range, wrapped; room is left for a retry minutes later.
    fn at(&self, offset: i64) -> i64 {
        self.t0 + offset.rem_euclid(self.span - 10 * MINUTE)
    }

    /// A start time leaving `len` ms of the range for a campaign.
    fn campaign_start(&mut self, len: i64) -> i64 {
        self.t0 + self.rng.below((self.span - len).max(1) as u64) as i64
    }

    /// Network `net` with an address in its /16 drawn from `r`; no .0 or .255.
    fn place(&self, net: u16, r: u64) -> (u16, u32) {
        let [a, b] = self.nets[usize::from(net)].2;
        let ip = u32::from_be_bytes([a, b, (r >> 8) as u8, (r % 254 + 1) as u8]);
        (net, ip)
    }

    /// Network `net` with an address anywhere in its /16.
    fn place_any(&mut self, net: u16) -> (u16, u32) {
        let r = self.rng.next();
        self.place(net, r)
    }

    /// Flags of an attack attempt that succeeds with probability `p`: a takeover.
    fn takeover(&mut self, p: f64) -> u8 {
        if self.rng.chance(p) {
            SUCCESS | TAKEOVER
        } else {
            0
        }
    }

    fn push(
        &mut self,
        ts: i64,
        user: u64,
        (net, ip): (u16, u32),
        agent: u16,
        kind: AttackKind,
        flags: u8,
    ) {
        let user = user as u32;
        self.rows.push(Row {
            ts,
            user,
            ip,
            net,
            agent,
            kind,
            flags,
        });
    }

    /// Network and address of user `u` on `day`: at home, on another local ISP, or abroad.
    fn whereabouts(&mut self, u: u64, user: &User, day: u64) -> (u16, u32) {
        // A household travels together: one trip in some 30-day blocks, lasting 2-6 days, to a
        // weighted other country.
        let home = u64::from(user.home);
        let trip = hash(&[self.seed, home, day / 30, 1]);
        let (first, len) = ((trip >> 8) % 27, 2 + (trip >> 16) % 5);
        if trip % 100 < 35 && (day % 30).wrapping_sub(first) < len {
            let nets = &self.nets_of[pick_country(trip >> 24, user.country)];
            let net = nets[(trip >> 40) as usize % nets.len()];
            return self.place(net, hash(&[self.seed, home, day / 30, 2]));
        }
        let nets = &self.nets_of[user.country];
        // The home connection's address changes every few weeks; mobile data or the office
        // now and then, on the user's own address there.
        let lease = day / (7 + hash(&[self.seed, home, 3]) % 50);
        if self.rng.chance(0.15) {
            let isp = (user.isp + 1) % nets.len();
            return self.place(nets[isp], hash(&[self.seed, u, isp as u64, lease]));
        }
        self.place(
            nets[user.isp],
            hash(&[self.seed, home, user.isp as u64, lease]),
        )
    }

    /// User `u`'s device `k`, running `agent` when the range starts, on `day`: browsers
    /// update themselves every four to six weeks (each device on its own schedule) until
    /// they reach the newest version.
    fn updated(&self, u: u64, k: usize, agent: u16, day: u64) -> u16 {
        let Agent { family, newest, .. } = self.agents[usize::from(agent)];
        if family == BOT {
            return agent;
        }
        let schedule = hash(&[self.seed, u, k as u64, 4]);
        let every = 28 + schedule % 15;
        let updates = (day + (schedule >> 8) % every) / every;
        agent
            .saturating_add(updates.min(u64::from(u16::MAX)) as u16)
            .min(newest)
    }

    fn legit(&mut self, n: usize) {
        let goal = self.rows.len() + n;
        while self.rows.len() < goal {
            let u = self.rng.below(self.users.len() as u64);
            let user = self.users[u as usize];
            // Rejection sampling: the busiest log in sixteen times as often as most.
            if self.rng.below(16) >= user.activity {
                continue;
            }
            let day = self.rng.below(self.days);
            let hour = user.hour + self.rng.below(4) as i64 - self.rng.below(4) as i64;
            let local = day as i64 * DAY + (hour - COUNTRIES[user.country].2) * HOUR;
            let minute = self.rng.below(HOUR as u64) as i64;
            let mut ts = self.at(local + minute);
            let place = self.whereabouts(u, &user, day);
            let home = u64::from(user.home);
            let agent = if self.rng.chance(0.03) {
                self.rng.pick(&self.browsers)
            } else if home != u && self.rng.chance(SHARED_DEVICE_USE) {
                // The household's main device, kept up to date by its owner's schedule.
                self.updated(home, 0, self.users[home as usize].devices[0], day)
            } else {
                let k = if self.rng.chance(0.6) {
                    0
                } else {
                    self.rng.below(user.ndev) as usize
                };
                self.updated(u, k, user.devices[k], day)
            };
            for _ in 0..self.typos() {
                if self.rows.len() + 1 >= goal {
                    break;
                }
                self.push(ts, u, place, agent, AttackKind::Legitimate, 0);
                ts += 10_000 + self.rng.below(3 * MINUTE as u64 - 10_000) as i64;
            }
            self.push(ts, u, place, agent, AttackKind::Legitimate, SUCCESS);
        }
    }

    /// Wrong passwords before a user's login: one now and then, sometimes a few more (an
    /// old password, caps lock), up to [`MAX_TYPOS`].
    fn typos(&mut self) -> usize {
        let mut typos = usize::from(self.rng.chance(TYPO));
        while typos > 0 && typos < MAX_TYPOS && self.rng.chance(ANOTHER_TYPO) {
            typos += 1;
        }
        typos
    }

    fn stuffing(&mut self, n: usize) {
        let users = self.users.len() as u64;
        let mut left = n;
        while left > 0 {
            // Several campaigns across the range, bursts of hundreds of attempts in minutes.
            let size = (200 + self.rng.below(1800) as usize)
                .min((n / 4).max(50))
                .min(left);
            let len = (2 + self.rng.below(18) as i64) * MINUTE;
            let start = self.campaign_start(len);
            let agent = self.rng.pick(&self.bots);
            let ips: Vec<(u16, u32)> = (0..1 + self.rng.below(4))
                .map(|_| {
                    let net = self.rng.pick(&self.hosting);
                    self.place_any(net)
                })
                .collect();
            for i in 0..size {
                let ts = start + len * i as i64 / size as i64;
                // Combo lists hold many addresses that have no account here.
                let known = self.rng.chance(0.7);
                let user = if known {
                    self.rng.below(users)
                } else {
                    users + self.rng.below(1 << 30)
                };
                let flags = if known { self.takeover(0.01) } else { 0 };
                self.push(
                    ts,
                    user,
                    ips[i % ips.len()],
                    agent,
                    AttackKind::Stuffing,
                    flags,
                );
            }
            left -= size;
        }
    }

    fn spraying(&mut self, n: usize) {
        let mut left = n;
        while left > 0 {
            let size = (100 + self.rng.below(500) as usize)
                .min((n / 3).max(30))
                .min(left);
            // A residential proxy somewhere, or a hoster; one address per campaign.
            let c = self.rng.below(COUNTRIES.len() as u64) as usize;
            let nets = if self.rng.chance(0.5) {
                &self.hosting
            } else {
                &self.nets_of[c]
            };
            let net = self.rng.pick(nets);
            let place = self.place_any(net);
            let agents = if self.rng.chance(0.5) {
                &self.browsers
            } else {
                &self.bots
            };
            let agent = self.rng.pick(agents);
            let mut ts = self.campaign_start(size as i64 * 120_000);
            for _ in 0..size {
                ts += 30_000 + self.rng.below(90_000) as i64;
                let user = self.rng.below(self.users.len() as u64);
                let flags = self.takeover(0.003);
                self.push(ts, user, place, agent, AttackKind::Spraying, flags);
            }
            left -= size;
        }
    }

    fn targeted(&mut self, n: usize) {
        let mut left = n;
        while left > 0 {
            let u = self.rng.below(self.users.len() as u64);
            let user = self.users[u as usize];
            // The victim's country: half the time the victim's own ISP (a neighbour, a
            // customer of the same provider), otherwise another one.
            let nets = &self.nets_of[user.country];
            let other = if self.rng.chance(0.5) {
                0
            } else {
                1 + self.rng.below(nets.len() as u64 - 1) as usize
            };
            let net = nets[(user.isp + other) % nets.len()];
            let place = self.place_any(net);
            // The victim's browser family, another version or OS.
            let own = user.devices[0];
            let family = self.agents[usize::from(own)].family;
            let alike: Vec<u16> = (self.browsers.iter().copied())
                .filter(|&a| a != own && self.agents[usize::from(a)].family == family)
                .collect();
            let agent = if alike.is_empty() {
                own
            } else {
                self.rng.pick(&alike)
            };
            let fails = (self.rng.below(4) as usize).min(left - 1);
            let mut ts = self.campaign_start(HOUR);
            for _ in 0..fails {
                self.push(ts, u, place, agent, AttackKind::Targeted, 0);
                ts += 20_000 + self.rng.below(5 * MINUTE as u64) as i64;
            }
            self.push(
                ts,
                u,
                place,
                agent,
                AttackKind::Targeted,
                SUCCESS | TAKEOVER,
            );
            left -= fails + 1;
        }
    }

    fn travel(&mut self, n: usize, legit_len: usize) {
        if legit_len == 0 {
            return;
        }
        let latest = self.t0 + self.span - 3 * HOUR;
        for _ in 0..n {
            // Follow one of the victim's own successes; rows[..legit_len] are all legitimate.
            let victim = (0..64)
                .map(|_| self.rows[self.rng.below(legit_len as u64) as usize])
                .find(|r| r.flags & SUCCESS != 0 && r.ts < latest);
            let Some(victim) = victim else { return };
            let continent = COUNTRIES[self.nets[usize::from(victim.net)].0].3;
            let far: Vec<usize> = (0..COUNTRIES.len())
                .filter(|&i| FAR.contains(&COUNTRIES[i].0) && COUNTRIES[i].3 != continent)
                .collect();
            let country = self.rng.pick(&far);
            let net = self.rng.pick(&self.nets_of[country]);
            let place = self.place_any(net);
            let agent = self.rng.pick(&self.browsers);
            let ts = victim.ts + HOUR + self.rng.below(2 * HOUR as u64) as i64;
            let user = u64::from(victim.user);
            self.push(
                ts,
                user,
                place,
                agent,
                AttackKind::Travel,
                SUCCESS | TAKEOVER,
            );
        }
    }

    fn write(&self, out: impl io::Write) -> io::Result<CorpusStats> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(HEADER.split(','))?;
        let format: Vec<Item> = StrftimeItems::new("%Y-%m-%d %H:%M:%S%.3f").collect();
        let mut buf = String::new();
        let mut put = |w: &mut csv::Writer<_>, v: &dyn Display| -> io::Result<()> {
            buf.clear();
            write!(buf, "{v}").map_err(io::Error::other)?;
            Ok(w.write_field(&buf)?)
        };
        let bool = |b: bool| if b { "True" } else { "False" };
        let mut counts = [0u64; AttackKind::ALL.len()];
        for (i, r) in self.rows.iter().enumerate() {
            let at = DateTime::from_timestamp_millis(r.ts)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "start out of range"))?;
            let (country, asn, _) = self.nets[usize::from(r.net)];
            let agent = &self.agents[usize::from(r.agent)];
            let id = xxh3_64_with_seed(&r.user.to_le_bytes(), self.seed) as i64;
            put(&mut w, &i)?;
            put(&mut w, &at.format_with_items(format.iter()))?;
            put(&mut w, &id)?;
            w.write_field("")?;
            put(&mut w, &Ipv4Addr::from(r.ip))?;
            for field in [COUNTRIES[country].0, "-", "-"] {
                w.write_field(field)?;
            }
            put(&mut w, &asn)?;
            for field in [agent.ua.as_str(), &agent.browser, agent.os, agent.device] {
                w.write_field(field)?;
            }
            let (ok, attack) = (r.flags & SUCCESS != 0, r.kind.is_attack());
            for field in [bool(ok), bool(attack), bool(r.flags & TAKEOVER != 0)] {
                w.write_field(field)?;
            }
            w.write_field(r.kind.name())?;
            w.write_record(None::<&[u8]>)?;
            counts[r.kind as usize] += 1;
        }
        w.flush()?;
        let rows = self.rows.len() as u64;
        let takeovers = self.rows.iter().filter(|r| r.flags & TAKEOVER != 0).count() as u64;
        let by_kind = AttackKind::ALL.into_iter().zip(counts).collect();
        let legitimate = counts[AttackKind::Legitimate as usize];
        let attack_rows = rows - legitimate;
        Ok(CorpusStats {
            rows,
            legitimate,
            attack_rows,
            takeovers,
            by_kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(users: usize, rows: usize, seed: u64) -> CorpusSpec {
        CorpusSpec {
            users,
            rows,
            seed,
            ..CorpusSpec::default()
        }
    }

    fn run(spec: &CorpusSpec) -> (Vec<u8>, CorpusStats) {
        let mut out = Vec::new();
        let stats = generate(spec, &mut out).unwrap();
        (out, stats)
    }

    fn records(bytes: &[u8]) -> Vec<csv::StringRecord> {
        let mut r = csv::Reader::from_reader(bytes);
        r.records().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let (a, _) = run(&spec(500, 5_000, 7));
        assert_eq!(a, run(&spec(500, 5_000, 7)).0);
        assert_ne!(a, run(&spec(500, 5_000, 8)).0);
    }

    #[test]
    fn header_is_the_rba_header() {
        let (out, _) = run(&spec(10, 3, 1));
        let first = out.split(|&b| b == b'\n').next().unwrap();
        assert_eq!(
            std::str::from_utf8(first).unwrap(),
            "index,Login Timestamp,User ID,Round-Trip Time [ms],IP Address,Country,Region,City,\
             ASN,User Agent String,Browser Name and Version,OS Name and Version,Device Type,\
             Login Successful,Is Attack IP,Is Account Takeover,Attack Kind"
        );
    }

    #[test]
    fn row_counts_are_exact_even_for_tiny_corpora() {
        for (users, rows) in [(1, 0), (1, 1), (3, 7), (50, 999), (0, 40)] {
            let (out, stats) = run(&spec(users, rows, 3));
            assert_eq!(records(&out).len(), rows);
            assert_eq!(stats.rows, rows as u64);
            assert_eq!(stats.by_kind.values().sum::<u64>(), rows as u64);
            assert_eq!(stats.legitimate + stats.attack_rows, rows as u64);
        }
    }

    #[test]
    fn rows_are_well_formed_and_in_time_order() {
        let (out, _) = run(&spec(1_000, 20_000, 5));
        let rows = records(&out);
        let start = CorpusSpec::default().start.naive_utc();
        let mut last = start;
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.len(), 17);
            assert_eq!(&r[0], i.to_string());
            let ts = chrono::NaiveDateTime::parse_from_str(&r[1], "%Y-%m-%d %H:%M:%S%.3f").unwrap();
            assert!(ts >= last && ts >= start, "row {i} goes back in time");
            last = ts;
            r[2].parse::<i64>().unwrap();
            r[4].parse::<Ipv4Addr>().unwrap();
            r[8].parse::<u32>().unwrap();
            assert!(["True", "False"].contains(&&r[13]) && ["True", "False"].contains(&&r[15]));
            let legit = &r[14] == "False";
            assert!(!legit || &r[15] == "False", "row {i}: legitimate takeover");
            assert_eq!(legit, &r[16] == "legitimate", "row {i}: kind against label");
        }
        assert!(
            rows.iter().any(|r| r[9].contains(',')),
            "user agents with commas round-trip"
        );
    }

    #[test]
    fn label_shares_and_kinds_are_sensible() {
        let (_, s) = run(&spec(2_000, 20_000, 11));
        let share = |n: u64| n as f64 / s.rows as f64;
        assert!((0.10..=0.15).contains(&share(s.attack_rows)), "{s:?}");
        assert!((0.005..=0.04).contains(&share(s.takeovers)), "{s:?}");
        for kind in AttackKind::ALL {
            assert!(s.by_kind[&kind] > 0, "no {kind} rows: {s:?}");
        }
    }

    #[test]
    fn attacks_look_like_their_kind() {
        let (out, _) = run(&spec(2_000, 20_000, 13));
        let rows = records(&out);
        let attacks = rows.iter().filter(|r| &r[14] == "True");
        let failed = attacks.clone().filter(|r| &r[13] == "False").count();
        assert!(failed * 2 > attacks.clone().count(), "attacks mostly fail");
        let hosting = ["16509", "14061", "16276", "24940", "20473"];
        assert!(attacks.clone().any(|r| hosting.contains(&&r[8])));
        let legit = rows.iter().filter(|r| &r[14] == "False");
        let mistyped = legit.clone().filter(|r| &r[13] == "False").count() as f64;
        assert!((0.02..0.08).contains(&(mistyped / legit.count() as f64)));
    }

    #[test]
    fn some_households_share_a_device_and_a_home_address() {
        let (out, _) = run(&spec(2_000, 40_000, 17));
        let mut users_of: BTreeMap<(&str, &str), std::collections::BTreeSet<&str>> =
            BTreeMap::new();
        let rows = records(&out);
        for r in rows.iter().filter(|r| &r[16] == "legitimate") {
            users_of.entry((&r[4], &r[9])).or_default().insert(&r[2]);
        }
        let sharing: std::collections::BTreeSet<&str> = users_of
            .values()
            .filter(|users| users.len() > 1)
            .flatten()
            .copied()
            .collect();
        let users = rows
            .iter()
            .map(|r| &r[2])
            .collect::<std::collections::BTreeSet<_>>();
        let share = sharing.len() as f64 / users.len() as f64;
        assert!((0.05..0.35).contains(&share), "{share}");
    }

    #[test]
    fn default_spec_starts_on_2026_01_05() {
        let d = CorpusSpec::default();
        assert_eq!(d.start.to_rfc3339(), "2026-01-05T00:00:00+00:00");
        assert_eq!((d.users, d.rows, d.seed, d.days), (10_000, 100_000, 1, 30));
    }
}
