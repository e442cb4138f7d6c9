//! `moat ctl`'s tables: aligned columns for people (`--json` is for scripts). Every value a
//! client chose (identity, client id) is printed escaped, so it cannot paint the terminal.

use crate::control::{BanView, DrainAnswer, ReloadReport, SessionPage, SessionView, Unbanned};

/// Columns padded to their widest cell, two spaces apart.
pub(super) fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, w) in cells.zip(&widths) {
            text.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut head.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A value a client chose, escaped for the terminal: control characters only, so the quotes
/// moat puts around a client id or user name (`client id "dev-1"`) are shown as they are.
pub(super) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c.is_control() {
            true => out.extend(c.escape_default()),
            false => out.push(c),
        }
    }
    out
}

fn bytes(n: u64) -> String {
    bytesize::ByteSize(n).to_string()
}

pub(super) fn sessions(page: &SessionPage) -> String {
    let rows: Vec<Vec<String>> = page
        .sessions
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                clean(&s.identity),
                clean(&s.client_id),
                s.source.clone(),
                s.listener.clone(),
                s.transport.clone(),
                s.protocol.clone(),
                s.connected_since.clone(),
                format!("{}/{}", s.packets_in, s.packets_out),
                format!("{}/{}", bytes(s.bytes_in), bytes(s.bytes_out)),
            ]
        })
        .collect();
    let head = [
        "ID",
        "IDENTITY",
        "CLIENT ID",
        "SOURCE",
        "LISTENER",
        "TRANSPORT",
        "MQTT",
        "SINCE",
        "PKTS IN/OUT",
        "BYTES IN/OUT",
    ];
    let mut out = table(&head, &rows);
    out.push_str(&format!(
        "{} shown, {} live",
        page.sessions.len(),
        page.live
    ));
    if let Some(next) = page.next {
        out.push_str(&format!("; more with --after {next}"));
    }
    out.push('\n');
    out
}

pub(super) fn kicked(s: &SessionView) -> String {
    format!(
        "kicked session {} ({} / {} from {})\n",
        s.id,
        clean(&s.identity),
        clean(&s.client_id),
        s.source
    )
}

pub(super) fn bans(bans: &[BanView]) -> String {
    let rows: Vec<Vec<String>> = bans
        .iter()
        .map(|b| {
            vec![
                b.kind.clone(),
                b.id.map(|i| i.to_string()).unwrap_or_default(),
                clean(&b.target),
                b.remaining_secs
                    .map(|s| {
                        humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
                    })
                    .unwrap_or_else(|| "no end".into()),
                clean(&b.reason),
                clean(&b.rule),
            ]
        })
        .collect();
    let mut out = table(&["KIND", "ID", "TARGET", "LEFT", "REASON", "RULE"], &rows);
    out.push_str(&match bans.len() {
        1 => "1 ban\n".to_owned(),
        n => format!("{n} bans\n"),
    });
    out
}

pub(super) fn unbanned(u: &Unbanned) -> String {
    let mut out = String::new();
    for l in &u.lifted {
        out.push_str(&format!("lifted {}\n", clean(l)));
    }
    if u.lifted.is_empty() {
        out.push_str("no operator or automatic ban matched\n");
    }
    for p in &u.policy {
        out.push_str(&format!(
            "kept {} (a policy ban: edit its file to lift it)\n",
            clean(p)
        ));
    }
    out
}

pub(super) fn reloaded(r: &ReloadReport) -> String {
    let mut out = String::new();
    match &r.config_error {
        Some(e) => out.push_str(&format!(
            "moat.yaml refused, running configuration kept: {e}\n"
        )),
        None if r.applied.is_empty() => out.push_str("moat.yaml: no live setting changed\n"),
        None => out.push_str(&format!("moat.yaml applied: {}\n", r.applied.join(", "))),
    }
    for f in &r.restart_needed {
        out.push_str(&format!(
            "moat.yaml: {f} changed, needs a restart (running value kept)\n"
        ));
    }
    for why in &r.ignored {
        out.push_str(&format!("moat.yaml: {why}\n"));
    }
    out.push_str(&format!("policy: {}\n", r.policy));
    out.push_str(&format!("tls: {}\n", r.tls));
    if let Some(token) = &r.admin_token {
        out.push_str(&format!("admin token: {token}\n"));
    }
    if let Some(files) = &r.upstream_files {
        out.push_str(&format!("broker.upstream files: {files}\n"));
    }
    out
}

pub(super) fn draining(d: &DrainAnswer) -> String {
    match d.started {
        true => format!(
            "draining: {} sessions moved away over {}s, then moat exits\n",
            d.sessions, d.period_secs
        ),
        false => "a drain was already asked for\n".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_escape() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), clean("y\u{1b}[31m")]]);
        assert_eq!(t, "A    BB\nxxx  y\\u{1b}[31m\n");
    }

    #[test]
    fn a_ban_target_keeps_its_quotes_and_one_ban_is_one_ban() {
        let ban = BanView {
            kind: "admin".into(),
            id: Some(1),
            target: "client id \"dev-1\"".into(),
            reason: "r".into(),
            rule: "builtin admin ban #1 (client id \"dev-1\")".into(),
            by: None,
            set_at: None,
            remaining_secs: Some(60),
        };
        let out = bans(&[ban]);
        assert!(out.contains("client id \"dev-1\"  1m"), "{out}");
        assert!(!out.contains('\\'), "{out}");
        assert!(out.ends_with("\n1 ban\n"), "{out}");
    }
}
