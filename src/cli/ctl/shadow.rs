//! `moat ctl shadow`: the shadow policy's differences as tables (`GET /v1/shadow`).

use super::print::{clean, table};
use crate::ops::shadow::ShadowReport;

/// The summary, the counts per action and rule pair, then the latest examples.
pub(super) fn print(r: &ShadowReport) -> String {
    if !r.configured && r.differences == 0 {
        return "no shadow policy set (shadow_policies: in moat.yaml)\n".to_owned();
    }
    let mut out = format!(
        "shadow set: {}\n{} difference(s) since {}; {} authentication(s) not compared (a second password hash would be needed)\n",
        match r.configured {
            true => r.files.join(", "),
            false => "none in force now".to_owned(),
        },
        r.differences,
        r.since,
        r.not_compared,
    );
    if r.overflow > 0 {
        out.push_str(&format!(
            "{} difference(s) found no counter (too many rule pairs)\n",
            r.overflow
        ));
    }
    if r.pairs.is_empty() {
        return out;
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = r
        .pairs
        .iter()
        .map(|p| {
            vec![
                p.action.clone(),
                p.count.to_string(),
                format!("{} {}", p.enforced, p.enforced_rule),
                format!("{} {}", p.shadow, p.shadow_rule),
                p.last.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["ACTION", "COUNT", "ENFORCED", "SHADOW", "LAST"],
        &rows,
    ));
    out.push_str("\nrecent:\n");
    let rows: Vec<Vec<String>> = r
        .recent
        .iter()
        .map(|e| {
            vec![
                e.at.clone(),
                e.action.clone(),
                clean(e.identity.as_deref().unwrap_or("-")),
                clean(e.client_id.as_deref().unwrap_or("-")),
                clean(&e.subject),
                e.enforced.clone(),
                e.shadow.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "AT",
            "ACTION",
            "IDENTITY",
            "CLIENT ID",
            "SUBJECT",
            "ENFORCED",
            "SHADOW",
        ],
        &rows,
    ));
    out
}
