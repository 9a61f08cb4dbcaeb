//! `ratethrottle monitor`: a live dashboard of what the fleet publishes to Redis, or of a
//! simulated load in this process (`--demo`).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, List, ListItem, Paragraph, Row, Sparkline, Table};
use ratethrottle::Limiter;
use ratethrottle::store::MemoryStore;
use ratethrottle_config::{Config, ConfigWatcher, ConfiguredStore, Environment};
use ratethrottle_redis::RedisStore;
use ratethrottle_redis::telemetry::{
    Deltas, FleetSnapshot, ViolationSink, read_fleet, rule_definition, unix_millis,
};

use crate::output::{duration, percent};
use ratethrottle_protect::adaptive::{AdaptiveLimiter, AdaptiveSummary};

use crate::report::{
    Blocked, LEAST_TRUSTED, adaptive_line, adaptive_of, blocked_clients, blocked_rows, fleet_store,
    trust_rows,
};
use crate::{Outcome, usage};

/// Seconds of history on the sparklines.
const HISTORY: usize = 60;

/// Arguments of `ratethrottle monitor`.
#[derive(Debug, clap::Args)]
pub(crate) struct MonitorArgs {
    /// Watch a simulated load on the configured rules in this process instead of a fleet.
    #[arg(long)]
    demo: bool,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Print one screen as text after `--settle` seconds and exit (no terminal needed).
    #[arg(long)]
    once: bool,
    /// With --once: seconds to collect before printing.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
}

/// What the screen shows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Model {
    /// Where the numbers come from, e.g. `redis 127.0.0.1:6379 (prefix ratethrottle:)`.
    pub(crate) source: String,
    /// The latest numbers.
    pub(crate) snapshot: FleetSnapshot,
    /// The last error reading them, if the last read failed.
    pub(crate) error: Option<String>,
    /// The blacklist, DDoS protection's blocks among it.
    pub(crate) blocked: Vec<Blocked>,
    /// The adaptive limiter's figures, when one reports.
    pub(crate) adaptive: Option<AdaptiveSummary>,
}

enum Source {
    Fleet(RedisStore),
    Demo(Box<Demo>),
}

impl Source {
    async fn refresh(&mut self, model: &mut Model) {
        match self {
            Source::Fleet(store) => {
                match read_fleet(store, HISTORY as u64).await {
                    Ok(snapshot) => {
                        model.adaptive = adaptive_of(&snapshot);
                        model.snapshot = snapshot;
                        model.error = None;
                    }
                    Err(error) => model.error = Some(format!("{error} (retrying)")),
                }
                match blocked_clients(store).await {
                    Ok(blocked) => model.blocked = blocked,
                    Err(error) => model.error = Some(format!("{error:#} (retrying)")),
                }
            }
            Source::Demo(demo) => {
                demo.collect();
                model.snapshot = demo.snapshot.clone();
                model.adaptive = demo.adaptive.as_ref().map(|a| a.summary(LEAST_TRUSTED));
                if let Ok(blocked) = blocked_clients(demo.limiter.store()).await {
                    model.blocked = blocked;
                }
            }
        }
    }
}

pub(crate) async fn run(config: &Config, path: Option<&Path>, args: &MonitorArgs) -> Outcome {
    let interval = Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| usage(anyhow::anyhow!("--interval must be above 0 seconds")))?;
    let (mut source, label) = if args.demo {
        (
            Source::Demo(Box::new(Demo::start(config, path).await?)),
            "simulated load in this process (--demo)".to_owned(),
        )
    } else {
        let store = fleet_store(config, "monitor").await?;
        let label = format!(
            "redis {} (prefix {})",
            store.address(),
            store.config().key_prefix
        );
        (Source::Fleet(store), label)
    };
    let mut model = Model {
        source: label,
        ..Model::default()
    };
    if args.once {
        let settle = Duration::try_from_secs_f64(args.settle)
            .map_err(|_| usage(anyhow::anyhow!("--settle must be 0 or more seconds")))?;
        let steps = (settle.as_secs_f64() / interval.as_secs_f64())
            .ceil()
            .max(1.0) as u32;
        for _ in 0..steps {
            tokio::time::sleep(interval).await;
            source.refresh(&mut model).await;
        }
        out!("{}", render_text(&model, 110, 34));
        return Ok(());
    }
    if !std::io::stdout().is_terminal() {
        return Err(usage(anyhow::anyhow!(
            "monitor needs a terminal; use `monitor --once`, `metrics` or `stats --format json` in scripts"
        )));
    }
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let result = async {
        loop {
            source.refresh(&mut model).await;
            terminal.draw(|frame| draw(frame, &model))?;
            if quit_requested(interval)? {
                return Ok::<(), anyhow::Error>(());
            }
        }
    }
    .await;
    ratatui::restore();
    Ok(result?)
}

/// Waits up to `timeout` for a key; `true` for q, Esc or Ctrl-C.
fn quit_requested(timeout: Duration) -> anyhow::Result<bool> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || !event::poll(left)? {
            return Ok(false);
        }
        if let Event::Key(key) = event::read()? {
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if key.kind == KeyEventKind::Press
                && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
            {
                return Ok(true);
            }
        }
    }
}

/// The screen as text, `width` × `height` (for `--once` and tests).
pub(crate) fn render_text(model: &Model, width: u16, height: u16) -> String {
    let backend = ratatui::backend::TestBackend::new(width, height);
    let mut terminal = match ratatui::Terminal::new(backend) {
        Ok(terminal) => terminal,
        Err(never) => match never {},
    };
    if terminal.draw(|frame| draw(frame, model)).is_err() {
        return String::new();
    }
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        let line: String = (0..buffer.area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Draws the dashboard: header, allowed/denied sparklines, per-rule table, top limited
/// identifiers and recent violations.
pub(crate) fn draw(frame: &mut Frame<'_>, model: &Model) {
    let s = &model.snapshot;
    let [header, sparks, rules, bottom] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length((s.rules.len() as u16).clamp(1, 10) + 3),
        Constraint::Min(5),
    ])
    .areas(frame.area());

    let mut summary = vec![Span::raw(format!(
        " {} checks · {} allowed · {} denied ({}) · {} violations · {} process(es)",
        s.total(),
        s.allowed,
        s.denied,
        percent(s.block_rate()),
        s.violations,
        s.processes.len()
    ))];
    if let Some(error) = &model.error {
        summary.push(Span::styled(
            format!(" · {error}"),
            Style::new().fg(Color::Red),
        ));
    }
    let title = Line::from(vec![
        Span::styled(
            " ratethrottle monitor ",
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("· {} · q quits", model.source)),
    ]);
    frame.render_widget(
        Paragraph::new(vec![title, Line::from(summary)]).block(Block::bordered()),
        header,
    );

    let last = s.per_second.last().copied().unwrap_or_default();
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(sparks);
    // A sparkline draws its data from the left and cuts what does not fit: keep the newest.
    let fits = usize::from(left.width.saturating_sub(2));
    let newest = &s.per_second[s.per_second.len().saturating_sub(fits)..];
    let allowed: Vec<u64> = newest.iter().map(|p| p.allowed).collect();
    let denied: Vec<u64> = newest.iter().map(|p| p.denied).collect();
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(format!(" allowed/s: {} ", last.allowed)))
            .data(&allowed)
            .style(Style::new().fg(Color::Green)),
        left,
    );
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(format!(" denied/s: {} ", last.denied)))
            .data(&denied)
            .style(Style::new().fg(Color::Red)),
        right,
    );

    let rows = s.rules.iter().map(|r| {
        Row::new(vec![
            Cell::from(r.rule.clone()),
            Cell::from(r.definition.clone()),
            Cell::from(r.allowed.to_string()),
            Cell::from(r.denied.to_string()),
            Cell::from(r.violations.to_string()),
            Cell::from(percent(r.block_rate())),
        ])
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Min(30),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(10),
            ],
        )
        .header(
            Row::new([
                "rule",
                "definition",
                "allowed",
                "denied",
                "violations",
                "block rate",
            ])
            .style(Style::new().add_modifier(Modifier::BOLD)),
        )
        .block(Block::bordered().title(" rules ")),
        rules,
    );

    let [top, recent] =
        Layout::horizontal([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(bottom);
    let top_items: Vec<ListItem<'_>> = s
        .top_limited
        .iter()
        .map(|(id, n)| ListItem::new(format!("{n:>6}  {id}")))
        .collect();
    let recent = match &model.adaptive {
        Some(summary) => {
            let [recent, adaptive] =
                Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)])
                    .areas(recent);
            draw_trust(frame, adaptive, summary);
            recent
        }
        None => recent,
    };
    let [top, blocked] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    frame.render_widget(
        List::new(top_items).block(Block::bordered().title(" top limited identifiers (5 min) ")),
        top,
    );
    let blocked_items: Vec<ListItem<'_>> = blocked_rows(&model.blocked)
        .into_iter()
        .map(|row| ListItem::new(format!("{:>6}  ×{}  {}", row[1], row[2], row[0])))
        .collect();
    frame.render_widget(
        List::new(blocked_items).block(Block::bordered().title(" blocked: time left, ×offences ")),
        blocked,
    );
    let recent_items: Vec<ListItem<'_>> = s
        .recent_violations
        .iter()
        .map(|v| {
            let age = s.at_ms.saturating_sub(v.at_ms) / 1000;
            ListItem::new(format!(
                "{age:>4}s ago  {:<14} {:<18} retry {}",
                v.rule,
                v.identifier,
                duration(Some(Duration::from_millis(v.retry_after_ms)))
            ))
        })
        .collect();
    frame.render_widget(
        List::new(recent_items).block(Block::bordered().title(" recent violations ")),
        recent,
    );
}

/// The adaptive limiter's panel: its figures, then the least trusted clients with their
/// trust, limit and anomalies.
fn draw_trust(frame: &mut Frame<'_>, area: ratatui::layout::Rect, summary: &AdaptiveSummary) {
    let mut items = vec![ListItem::new(adaptive_line(summary))];
    items.extend(trust_rows(summary).into_iter().map(|row| {
        ListItem::new(format!(
            "{:>5} trust · limit {:>6} · {:>4} anomalies · {:>5} over  {}",
            row[1], row[2], row[4], row[3], row[0]
        ))
    }));
    frame.render_widget(
        List::new(items).block(Block::bordered().title(" adaptive: least trusted ")),
        area,
    );
}

/// A simulated load on the configured rules, in this process: steady clients that stay under
/// the limits and a few abusive ones that do not.
struct Demo {
    limiter: Limiter<ConfiguredStore>,
    /// The adaptive limiter, when the configuration enables it: the same clients ask it too.
    adaptive: Option<Arc<AdaptiveLimiter<ConfiguredStore>>>,
    /// Follows edits of the configuration file, if there is one.
    _watcher: Option<ConfigWatcher>,
    deltas: Deltas,
    violations: Arc<ViolationSink>,
    snapshot: FleetSnapshot,
    _load: tokio::task::JoinHandle<()>,
}

impl Demo {
    async fn start(config: &Config, path: Option<&Path>) -> Result<Self, crate::Failure> {
        let rules: Vec<String> = config.rules.iter().map(|r| r.name.clone()).collect();
        if rules.is_empty() {
            return Err(usage(anyhow::anyhow!(
                "--demo needs at least one rule in the configuration"
            )));
        }
        // The demo always runs in memory; the configuration's rules and lists apply.
        let limiter = Limiter::builder()
            .store(ConfiguredStore::Memory(MemoryStore::new()))
            .build();
        config.apply_to(&limiter, None).await.map_err(usage)?;
        let watcher = path
            .map(|path| {
                ConfigWatcher::spawn(
                    path,
                    config.clone(),
                    limiter.clone(),
                    Environment::from_process(),
                )
            })
            .transpose()
            .map_err(usage)?;
        let violations = ViolationSink::attach(&limiter);
        let adaptive = config
            .adaptive
            .enabled
            .then(|| AdaptiveLimiter::new(limiter.clone(), config.adaptive.settings()))
            .transpose()
            .map_err(usage)?
            .map(Arc::new);
        let load = tokio::spawn(simulate(limiter.clone(), rules, adaptive.clone()));
        Ok(Demo {
            limiter,
            adaptive,
            _watcher: watcher,
            deltas: Deltas::default(),
            violations,
            snapshot: FleetSnapshot::default(),
            _load: load,
        })
    }

    fn collect(&mut self) {
        let delta = self.deltas.next(&self.limiter.metrics());
        let second = unix_millis(std::time::SystemTime::now()) / 1000;
        self.snapshot
            .record(second, &delta, &self.violations.take(), HISTORY, 50);
        self.snapshot.processes = vec![format!("this process ({})", std::process::id())];
        for rule in &mut self.snapshot.rules {
            if let Some(r) = self.limiter.rule(&rule.rule) {
                rule.definition = rule_definition(&r);
            }
        }
    }
}

/// Sends the simulated requests every 100 ms: 20 steady clients spread over the rules, and
/// three abusive ones hammering the first rules.
/// With `adaptive`, every simulated request is also checked adaptively.
async fn simulate(
    limiter: Limiter<ConfiguredStore>,
    rules: Vec<String>,
    adaptive: Option<Arc<AdaptiveLimiter<ConfiguredStore>>>,
) {
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    let abusers = ["203.0.113.7", "203.0.113.9", "198.51.100.23"];
    let send = |client: String, rule: usize| {
        let (limiter, adaptive, rule) = (&limiter, &adaptive, &rules[rule % rules.len()]);
        async move {
            let _ = limiter.check(&client, rule).await;
            if let Some(adaptive) = adaptive {
                let _ = adaptive.check(&client, None).await;
            }
        }
    };
    for tick in 0u64.. {
        ticks.tick().await;
        for client in 0..20u64 {
            // Each steady client sends about one request every 6 seconds.
            if (tick + client * 7) % 61 == 0 {
                send(format!("10.0.0.{client}"), client as usize).await;
            }
        }
        for (i, abuser) in abusers.iter().enumerate() {
            // Bursts on and off: 10 s of 3 requests per tick, then 5 s of quiet.
            if (tick / 50 + i as u64) % 3 != 2 {
                for _ in 0..3 {
                    send((*abuser).to_owned(), i).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratethrottle_redis::telemetry::{RuleTotals, SecondCounts, ViolationRecord};

    fn model() -> Model {
        let mut snapshot = FleetSnapshot::default();
        snapshot.at_ms = 1_800_000_010_000;
        snapshot.allowed = 120;
        snapshot.denied = 30;
        snapshot.violations = 30;
        let mut rule = RuleTotals::default();
        rule.rule = "api".to_owned();
        rule.definition = "10 per 60s, sliding_counter, ip".to_owned();
        rule.allowed = 120;
        rule.denied = 30;
        rule.violations = 30;
        snapshot.rules = vec![rule];
        snapshot.per_second = (0..60)
            .map(|i| {
                let mut s = SecondCounts::default();
                s.at = 1_800_000_000 - 60 + i;
                s.allowed = i % 7;
                s.denied = i % 3;
                s
            })
            .collect();
        snapshot.top_limited = vec![("203.0.113.7".to_owned(), 25), ("10.0.0.3".to_owned(), 5)];
        snapshot.recent_violations = vec![ViolationRecord::new(
            1_800_000_007_000,
            "203.0.113.7",
            "api",
            10,
            6000,
        )];
        snapshot.processes = vec!["web-1:100".to_owned(), "web-2:200".to_owned()];
        Model {
            source: "redis test".to_owned(),
            snapshot,
            error: None,
            blocked: vec![Blocked {
                identifier: "198.51.100.66".to_owned(),
                expires_in: Some(7190),
                offences: 2,
            }],
            adaptive: None,
        }
    }

    #[test]
    fn the_screen_shows_the_adaptive_limiters_least_trusted_clients() {
        let mut model = model();
        let summary = r#"{"base_limit": 100, "profiles": 40, "total_requests": 900,
            "anomalies_detected": 12, "low_trust": 3, "mean_trust": 0.61,
            "least_trusted": [{"identifier": "203.0.113.9", "trust_score": 0.12,
            "anomaly_count": 7, "violation_count": 30, "current_limit": 50}]}"#;
        model.adaptive = AdaptiveSummary::from_json(summary);
        let text = render_text(&model, 110, 34);
        assert!(text.contains("adaptive: least trusted"), "{text}");
        assert!(
            text.contains("40 profiles · mean trust 0.61 · 3 below 0.3"),
            "{text}"
        );
        assert!(
            text.contains(" 0.12 trust · limit     50 ·    7 anomalies ·    30 over  203.0.113.9"),
            "{text}"
        );
    }

    #[test]
    fn the_screen_shows_totals_rules_top_identifiers_and_violations() {
        let text = render_text(&model(), 110, 30);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].contains("ratethrottle monitor · redis test · q quits"),
            "{text}"
        );
        assert!(
            lines[2].contains(
                "150 checks · 120 allowed · 30 denied (20.0%) · 30 violations · 2 process(es)"
            ),
            "{text}"
        );
        assert!(text.contains("allowed/s: 3"), "{text}");
        assert!(text.contains("denied/s: 2"), "{text}");
        let api = lines
            .iter()
            .find(|l| l.contains("api") && l.contains("10 per 60s"))
            .expect("a rule row");
        for cell in ["120", "30", "20.0%"] {
            assert!(api.contains(cell), "{api}");
        }
        assert!(text.contains("    25  203.0.113.7"), "{text}");
        assert!(text.contains("198.51.100.66"), "{text}");
        assert!(text.contains(" 7190s  ×2  198.51.100.66"), "{text}");
        assert!(
            text.contains("3s ago  api            203.0.113.7"),
            "{text}"
        );
        // The sparklines drew bars.
        assert!(
            text.contains('█') || text.contains('▇') || text.contains('▄'),
            "{text}"
        );
    }

    #[test]
    fn a_read_error_is_shown_in_red_on_the_header() {
        let mut m = model();
        m.error = Some("redis at 127.0.0.1:1 is unavailable (retrying)".to_owned());
        let text = render_text(&m, 200, 30);
        assert!(
            text.contains("redis at 127.0.0.1:1 is unavailable (retrying)"),
            "{text}"
        );
    }
}
