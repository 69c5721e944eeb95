//! `segment-sync forget` and `segment-sync deletions`: what an operator does by
//! hand with the deletion rule of [`Deletions`](super::Deletions).

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::path::Path;
use std::sync::Arc;

use segment_sync_ports::{
    DeletionRecord, Forgotten, RegulationClient, RegulationError, Subject, SyncStateStore,
    MONTHLY_REGULATED_USERS_LIMIT,
};
use time::format_description::well_known::Rfc3339;

use super::{month_start, subject, DeletionError, Sent};
use crate::cli::{DeletionsArgs, ForgetArgs};
use crate::output::Stdout;
use crate::settings::Settings;
use crate::{wiring, Exit, Failure};

/// Subjects forgotten per transaction.
const FORGET_BATCH: usize = 500;
/// Deletions listed per page.
const LIST_PAGE: usize = 1_000;
/// Overall statuses after which a regulation no longer changes.
const FINAL_STATUSES: &[&str] = &[
    "FINISHED",
    "FAILED",
    "INVALID",
    "NOT_SUPPORTED",
    "PARTIAL_SUCCESS",
];

/// `segment-sync forget`: erases each named customer here, then sends the queued
/// deletions to Segment (with `SEGMENT_DELETION` on), printing what was done.
pub async fn forget(args: &ForgetArgs, settings: &Settings) -> Result<Exit, Failure> {
    let (state, deletion) = Settings::require((&settings.state, &settings.deletion))?;
    let mut arguments = args.subjects.clone();
    if let Some(file) = &args.file {
        arguments.extend(read_subjects(file)?);
    }
    let arguments: Vec<String> = arguments
        .into_iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    if arguments.is_empty() {
        return Err(Failure::Usage(
            "name at least one customer id or email to forget (or --file PATH)".to_owned(),
        ));
    }
    let state = wiring::existing_state(state).await?.port;
    let deletions = wiring::deletions(state, deletion.as_ref())?;
    let mut out = Stdout::default();
    for names in arguments.chunks(FORGET_BATCH) {
        let subjects: Vec<Subject> = names.iter().map(|name| subject(name)).collect();
        let answers = deletions
            .forget(&subjects)
            .await
            .map_err(|e| Failure::Fatal(e.to_string()))?;
        for (name, answer) in names.iter().zip(&answers) {
            out.line(format_args!("{name}: {}", forgotten(answer)))?;
        }
    }
    if !deletions.regulates() {
        out.line(
            "SEGMENT_DELETION is off: erased here only; the Segment profiles are left as they are",
        )?;
        out.flush()?;
        return Ok(Exit::Success);
    }
    let exit = match deletions.send_queued().await {
        Ok(sent) => {
            out.line(sent_line(&sent))?;
            Exit::Success
        }
        Err(DeletionError::Regulation(error @ RegulationError::Unauthorized { .. })) => {
            out.flush()?;
            return Err(Failure::Fatal(format!(
                "{error}; the deletions stay queued for the next forget, sync or serve"
            )));
        }
        Err(error) => {
            out.line(format_args!(
                "not sent to Segment yet ({error}); the deletions stay queued for the next forget, sync or serve"
            ))?;
            Exit::Partial
        }
    };
    out.flush()?;
    Ok(exit)
}

/// One subject a line of `path` (`-`: standard input); blank lines and `#`
/// comments left out.
fn read_subjects(path: &Path) -> Result<Vec<String>, Failure> {
    let reader: Box<dyn std::io::BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut subjects = Vec::new();
    for line in reader.lines() {
        let line =
            line.map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') {
            subjects.push(line.to_owned());
        }
    }
    Ok(subjects)
}

/// What forgetting one subject did, in words.
fn forgotten(answer: &Forgotten) -> String {
    if answer.is_empty() {
        return "nothing stored".to_owned();
    }
    let mut said = format!(
        "erased {} customer record{}, {} dead letter{}",
        answer.customer_ids.len(),
        plural(answer.customer_ids.len() as u64),
        answer.dead_letters,
        plural(answer.dead_letters)
    );
    if answer.queued > 0 {
        said += &format!(
            "; {} deletion{} queued for Segment",
            answer.queued,
            plural(answer.queued)
        );
    }
    said
}

fn sent_line(sent: &Sent) -> String {
    let mut line = if sent.regulations.is_empty() {
        "nothing to send to Segment".to_owned()
    } else {
        format!(
            "Segment accepted {} regulation{} for {} user{} ({})",
            sent.regulations.len(),
            plural(sent.regulations.len() as u64),
            sent.users,
            plural(sent.users),
            sent.regulations.join(", ")
        )
    };
    if sent.refused > 0 {
        line += &format!(
            "; Segment refused {} (see segment-sync deletions)",
            sent.refused
        );
    }
    if sent.over_limit > 0 {
        line += &format!(
            "; {} wait for next month (Segment's allowance of {MONTHLY_REGULATED_USERS_LIMIT} regulated users a month is used up)",
            sent.over_limit
        );
    }
    line
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `segment-sync deletions`: the deletions asked of Segment, this month's count
/// against Segment's allowance and, with `--refresh`, each unfinished
/// regulation's status read from Segment first.
pub async fn deletions(args: &DeletionsArgs, settings: &Settings) -> Result<Exit, Failure> {
    let (state,) = Settings::require((&settings.state,))?;
    let state = wiring::existing_state(state).await?.port;
    if args.refresh {
        let (deletion,) = Settings::require((&settings.deletion,))?;
        let client = wiring::regulations(deletion.as_ref())?.ok_or_else(|| {
            Failure::Usage(
                "--refresh asks Segment's Public API: set SEGMENT_DELETION and SEGMENT_PUBLIC_API_TOKEN"
                    .to_owned(),
            )
        })?;
        refresh(state.as_ref(), client.port).await?;
    }
    let fatal = |e: segment_sync_ports::StateError| Failure::Fatal(e.to_string());
    let now = time::OffsetDateTime::now_utc();
    let this_month = state
        .regulated_since(month_start(now))
        .await
        .map_err(fatal)?;
    let mut out = Stdout::default();
    if !args.json {
        out.line(format_args!(
            "{this_month} of {MONTHLY_REGULATED_USERS_LIMIT} users regulated this month (Segment's allowance)"
        ))?;
    }
    let mut listed = 0usize;
    let mut after = None;
    while !out.is_closed() {
        let page = next_page(state.as_ref(), &mut after).await?;
        if page.is_empty() {
            break;
        }
        for deletion in &page {
            if args.json {
                out.json_array_item(listed == 0, &Listed::from(deletion))?;
            } else {
                out.line(describe(deletion))?;
            }
            listed += 1;
        }
    }
    if args.json {
        out.json_array_end(listed == 0)?;
    } else if listed == 0 {
        out.line("no deletions yet")?;
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// The deletions after `after` (from the start: `None`), a page of them; moves
/// `after` past them. Empty once every one was read.
async fn next_page(
    state: &dyn SyncStateStore,
    after: &mut Option<i64>,
) -> Result<Vec<DeletionRecord>, Failure> {
    let page = state
        .deletions_after(*after, LIST_PAGE)
        .await
        .map_err(|e| Failure::Fatal(e.to_string()))?;
    if let Some(last) = page.last() {
        *after = Some(last.id);
    }
    Ok(page)
}

/// Reads the status of every regulation not yet final from Segment.
async fn refresh(
    state: &dyn SyncStateStore,
    client: Arc<dyn RegulationClient>,
) -> Result<(), Failure> {
    let fatal = |e: segment_sync_ports::StateError| Failure::Fatal(e.to_string());
    let mut unfinished = BTreeSet::new();
    let mut after = None;
    loop {
        let page = next_page(state, &mut after).await?;
        if page.is_empty() {
            break;
        }
        for deletion in page {
            let finished = deletion
                .status
                .as_deref()
                .is_some_and(|status| FINAL_STATUSES.contains(&status));
            if let (Some(id), false) = (deletion.regulation_id, finished) {
                unfinished.insert(id);
            }
        }
    }
    for id in unfinished {
        match client.status(&id).await {
            Ok(status) => state
                .set_regulation_status(&id, &status)
                .await
                .map_err(fatal)?,
            Err(error @ RegulationError::Unauthorized { .. }) => {
                return Err(Failure::Fatal(error.to_string()))
            }
            Err(error) => {
                tracing::warn!(regulation_id = %id, %error, "cannot read a regulation's status; its last known one is shown");
            }
        }
    }
    Ok(())
}

/// A deletion as `deletions` prints it: id, when, type, status, regulation, user.
fn describe(deletion: &DeletionRecord) -> String {
    let listed = Listed::from(deletion);
    format!(
        "#{}\t{}\t{}\t{}\t{}\t{}",
        listed.id,
        listed.requested_at,
        listed.regulation_type,
        listed.status,
        listed.regulation_id.unwrap_or("-"),
        listed.subject
    )
}

/// A deletion as `deletions --json` shows it.
#[derive(serde::Serialize)]
struct Listed<'a> {
    id: i64,
    subject: &'a str,
    regulation_type: &'a str,
    requested_at: String,
    regulation_id: Option<&'a str>,
    sent_at: Option<String>,
    /// `queued` until sent; then Segment's status, or why it refused.
    status: &'a str,
}

impl<'a> From<&'a DeletionRecord> for Listed<'a> {
    fn from(deletion: &'a DeletionRecord) -> Self {
        let when = |at: time::OffsetDateTime| at.format(&Rfc3339).unwrap_or_default();
        Self {
            id: deletion.id,
            subject: &deletion.subject,
            regulation_type: &deletion.regulation_type,
            requested_at: when(deletion.requested_at),
            regulation_id: deletion.regulation_id.as_deref(),
            sent_at: deletion.sent_at.map(when),
            status: deletion.status.as_deref().unwrap_or("queued"),
        }
    }
}
