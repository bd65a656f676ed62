//! `vouch bench`: one table of the verifier's performance. Each row is a figure measured through
//! the real code (the full HTTPS path, the store, the CA, the policy engine) held against its
//! ceiling, the raw work it cannot avoid (signatures, `fsync`), measured in the same run, so the
//! ratio survives a noisy machine. Absolute figures are reported; the targets are ratios.
//!
//! `vouch bench load` is the fleet simulation ([`load`]); `--svid`, `--quorum` and `--gossip`
//! keep their single-measurement reports.

mod cluster;
mod load;
mod micro;
mod scale;
mod table;
mod tpm;

use anyhow::{Context as _, Result};
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{BenchArgs, BenchCmd};
use crate::output;
use cluster::{Cluster, Template};
use table::{Figure, Row, Table, Target};

/// Run `vouch bench` as `args` says.
pub async fn run(args: BenchArgs, json: bool) -> Result<ExitCode> {
    if let Some(BenchCmd::Load(l)) = args.command {
        return load::run(l, json).await;
    }
    if let Some(BenchCmd::Scale(s)) = args.command {
        return scale::run(s, json).await;
    }
    if args.svid {
        return svid_report(args.n, json).await;
    }
    if args.quorum {
        return quorum_report(args.n, json);
    }
    if args.pq {
        return pq_report(args.n, json);
    }
    if args.anomalies {
        return anomalies_report(args.n, json).await;
    }
    if args.feed {
        return feed_report(args.n, json).await;
    }
    if !args.gossip.is_empty() {
        return crate::spread::run(
            &args.gossip,
            args.down_percent,
            args.gossip_interval_ms,
            json,
        )
        .await;
    }
    let dir = tempfile_dir()?.join("table");
    std::fs::create_dir_all(&dir)?;
    let out = table(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let t = out?;
    if json {
        output::json(&t)?;
    } else {
        print!("{}", t.render());
    }
    Ok(ExitCode::SUCCESS)
}

const REPEAT: &str = "software evidence, repeat attestation (full HTTPS path, durable write)";
const CHANGED: &str = "software evidence, changed claims (full appraisal)";
const TPM: &str = "TPM quote attestation, repeat";
const PIPELINE: &str = "appraisal pipeline alone, repeat (parts by digest, no HTTP)";
const PIPELINE_CHANGED: &str = "appraisal pipeline alone, changed claims";
const ANOMALY: &str = "fleet anomaly detector, repeat attestation";
const ANOMALY_FULL: &str = "fleet anomaly detector, every measurement new to the node";
const IMAGES: &str = "image hook, repeat attestation (8 cached image digests)";
const P50: &str = "latency, one attestation, server side, unloaded: p50";
const P99: &str = "latency, one attestation, server side, unloaded: p99";
const POLICY: &str = "policy evaluation, repeat attestation";
const POLICY_CHANGED: &str = "policy evaluation, changed claims";
const SQLITE: &str = "SQLite durable records";
const POSTGRES: &str = "PostgreSQL durable records";
const SVID: &str = "X.509-SVID issuance";
const QUORUM: &str = "quorum result signing (2-of-3 FROST)";
const PQ: &str = "post-quantum result signature (ML-DSA-65 sign + verify)";
const TELEMETRY: &str = "metrics and request id, per attestation";
/// Bytes of a result's signing input the PQ row signs: about a software result with its
/// replica certificate in `x5c` (header and claims, base64url), as the verifier signs it
/// (1,737 bytes in vouch-server `tests/pq_results.rs`).
const RESULT_BYTES: usize = 1800;
const SCALE_MEMORY: &str = "scale: verifier memory per registered workload";
const SCALE_ATTEST: &str = "scale: attestation cost at N workloads against 1,000";
const SCALE_SVID: &str = "scale: X.509-SVID request at N entries against 1,000";
const SCALE_WATCH: &str = "scale: entry change to the last watching agent";
const SCALE_STARTUP: &str = "scale: verifier start-up at N workloads";

/// The scale rows: a store of `--scale-workloads` workloads and entries against one of 1,000.
async fn scale_rows(args: &BenchArgs, n: usize, t: &mut Table) {
    let names = [
        (SCALE_MEMORY, Target::RatioAtMost { ratio: 1.0 }),
        (SCALE_ATTEST, Target::RatioAtMost { ratio: 1.5 }),
        (SCALE_SVID, Target::RatioAtMost { ratio: 1.5 }),
        (SCALE_WATCH, Target::MicrosBelow { micros: 1e6 }),
        (SCALE_STARTUP, Target::None),
    ];
    if args.scale_workloads == 0 {
        for (name, target) in names {
            t.rows
                .push(Row::skipped(name, target, "skipped (--scale-workloads 0)"));
        }
        return;
    }
    let a = crate::cli::ScaleArgs {
        workloads: args.scale_workloads,
        baseline: 1_000,
        watchers: args.scale_workloads.min(1_000),
        agent_entries: 10_000,
        n: n.min(200),
    };
    let sizes = match scale::both_sizes(&a).await {
        Ok(s) if s.len() == 2 => s,
        Ok(_) => return,
        Err(e) => {
            for (name, target) in names {
                t.rows
                    .push(Row::skipped(name, target, format!("failed: {e:#}")));
            }
            return;
        }
    };
    let (big, small) = (&sizes[0], &sizes[1]);
    let at = format!("{} workloads and entries", big.workloads);
    t.rows.push(Row::measured(
        SCALE_MEMORY,
        Figure::bytes(big.bytes_per_workload_verifier),
        Figure::bytes(1024.0),
        Target::RatioAtMost { ratio: 1.0 },
        format!(
            "the verifier's resident memory grown from before start-up to warm, ÷ {at}; \
             ceiling: the 1 KiB a workload may take"
        ),
    ));
    let micros = |us: f64| Figure::micros(std::time::Duration::from_secs_f64(us / 1e6));
    t.rows.push(Row::measured(
        SCALE_ATTEST,
        micros(big.attest_p50_us),
        micros(small.attest_p50_us),
        Target::RatioAtMost { ratio: 1.5 },
        format!("full HTTPS attestation p50 at {at} against the same at 1,000 (bench scale)"),
    ));
    t.rows.push(Row::measured(
        SCALE_SVID,
        micros(big.svid_p50_us),
        micros(small.svid_p50_us),
        Target::RatioAtMost { ratio: 1.5 },
        format!("X.509-SVID request p50 (entry index lookup + issue) at {at} against 1,000"),
    ));
    t.rows.push(Row::measured(
        SCALE_WATCH,
        micros(big.watch_last_ms * 1e3),
        micros(10e6),
        Target::MicrosBelow { micros: 1e6 },
        format!(
            "an entry added through the management API until the last of {} agents holding \
             POST /v1/entries/watch is answered, at {at}; ceiling: SPIRE's sync interval of \
             up to 10 s, for scale",
            big.watchers
        ),
    ));
    t.rows.push(Row::measured(
        SCALE_STARTUP,
        micros(big.startup_ms * 1e3),
        micros(small.startup_ms * 1e3),
        Target::None,
        format!("verifier start-up (open, TLS, entry index read in pages) at {at} against 1,000"),
    ));
}

/// Every row, measured in one run.
async fn table(args: &BenchArgs, dir: &std::path::Path) -> Result<Table> {
    let n = args.n.max(5);
    let concurrency = args.concurrency.max(1);
    let cluster = Cluster::start(dir, args.replicas, args.database_url.as_deref(), |c| {
        // The TPM row's swtpm has no EK certificate.
        c.tpm_allow_uncertified_ek = true;
    })
    .await?;
    let result = attestation_rows(args, dir, &cluster, n, concurrency).await;
    cluster.shutdown().await;
    let (mut t, template) = result?;

    // The appraisal pipeline alone (vouch-verifier on a SQLite store of its own, no HTTP, no
    // client on the cores), against the raw signature work in the same run.
    let store =
        std::sync::Arc::new(vouch_store::SqliteStore::open(&dir.join("pipeline.db")).await?);
    let p = vouch_verifier::bench::pipeline(store, template.clone(), n.min(2000)).await?;
    t.rows.push(Row::measured(
        PIPELINE,
        Figure::micros(p.appraise_held),
        Figure::micros(p.raw_signature_held),
        Target::RatioAtMost { ratio: 2.0 },
        format!(
            "vouch_verifier::Verifier::appraise of repeated claims, the unchanged parts sent \
             by digest ({} of {} payload bytes), nothing recorded, one at a time; ceiling: \
             one Ed25519 verify of that (small) payload + one Ed25519 signature of a result",
            p.held_payload_bytes, p.payload_bytes
        ),
    ));
    t.rows.push(Row::measured(
        PIPELINE_CHANGED,
        Figure::micros(p.appraise_changed),
        Figure::micros(p.raw_signature),
        Target::RatioAtMost { ratio: 4.0 },
        "as the row above with a claim changed every time (a policy evaluation each), the \
         payload in full",
    ));

    // The fleet anomaly detector's hook, over the same measurements, against the pipeline.
    match vouch_server::bench_anomalies(&template, 50, n.clamp(10, 5000)) {
        Ok(a) => {
            t.rows.push(Row::measured(
                ANOMALY,
                Figure::micros(a.steady),
                Figure::micros(p.appraise_held),
                Target::ShareAtMost { share: 0.10 },
                format!(
                    "the verifier's anomaly hook (detector under its lock, parts unchanged \
                     since the node's last attestation skipped) in a group of {} nodes; \
                     against the pipeline's repeat appraisal above",
                    a.nodes
                ),
            ));
            t.rows.push(Row::measured(
                ANOMALY_FULL,
                Figure::micros(a.full),
                Figure::micros(p.appraise_changed),
                Target::ShareReported,
                format!(
                    "every one of the {} measurements looked up (a node's first attestation, \
                     or all its parts changed); against the pipeline with changed claims",
                    a.measurements
                ),
            ));
        }
        Err(e) => t.rows.push(Row::skipped(
            ANOMALY,
            Target::ShareAtMost { share: 0.10 },
            e,
        )),
    }

    // The image hook ([image_signatures]) on a repeat attestation: every digest's signature
    // and provenance answer cached, against the pipeline's repeat appraisal.
    match vouch_server::ImageSignatures::bench_cached(n.clamp(100, 20_000)).await {
        Ok(c) => t.rows.push(Row::measured(
            IMAGES,
            Figure::micros(c.eight),
            Figure::micros(p.appraise_held),
            Target::ShareAtMost { share: 0.10 },
            format!(
                "the verifier's image hook answering input.images for a workload of 8 \
                 containers from its cache (signature and provenance each), no registry \
                 asked; one digest: {:.1} µs; against the pipeline's repeat appraisal above",
                c.one.as_secs_f64() * 1e6
            ),
        )),
        Err(e) => t
            .rows
            .push(Row::skipped(IMAGES, Target::ShareAtMost { share: 0.10 }, e)),
    }

    // Policy: what a repeat attestation costs the verifier (finding the appraisal it made for
    // the same claims) and what changed claims cost (an evaluation), against the server-side
    // time of one attestation (the unloaded p50 above).
    let work = micro::policy(&template, "bench", n.min(500))?;
    match t
        .rows
        .iter()
        .find(|r| r.name == P50)
        .and_then(|r| r.measured)
    {
        Some(att) => {
            t.rows.push(Row::measured(
                POLICY,
                Figure::micros(work.repeat),
                att,
                Target::ShareAtMost { share: 0.10 },
                "the verifier's policy work for claims it appraised before: the appraisal \
                 cache key (SHA-256 over the claims JSON, policy version, reference-value \
                 revision) and the lookup, timed directly; against the unloaded server-side \
                 p50 above",
            ));
            t.rows.push(Row::measured(
                POLICY_CHANGED,
                Figure::micros(work.evaluate),
                att,
                Target::ShareReported,
                "one evaluation of the default policy (compiled once, as the verifier does) \
                 over the bench's claims, timed directly; against the same p50",
            ));
        }
        None => t.rows.push(Row::skipped(
            POLICY,
            Target::ShareAtMost { share: 0.10 },
            "no attestation time measured",
        )),
    }

    // Scale: N registered workloads and entries against 1,000 (bench/scale.rs).
    scale_rows(args, n, &mut t).await;

    // Durable records: concurrent record_attestation calls (vouch_store::bench_records, with
    // claims the size of this machine's) against the disk's fsync rate.
    let claims_bytes = micro::verified(&template)?.claims.to_string().len();
    let cfg = vouch_store::RecordsBenchConfig {
        records: (n * 4).clamp(100, 20_000),
        concurrency: 64,
        claims_bytes,
    };
    let fsyncs = micro::fsync_rate(dir, (n / 2).clamp(20, 500))?;
    let how = |r: &vouch_store::RecordsBench| {
        format!(
            "{} Store::record_attestation calls, {} in flight, claims of {} bytes, each its \
             own nonce (vouch_store::bench_records; call latency p50 {:.2} ms, p99 {:.2} ms); \
             ceiling: fdatasync/s of a file on this machine's disk (ratio > 1: commits share \
             an fsync)",
            r.records,
            cfg.concurrency,
            r.claims_bytes,
            r.p50_us as f64 / 1e3,
            r.p99_us as f64 / 1e3
        )
    };
    let sqlite: std::sync::Arc<dyn vouch_store::Store> =
        std::sync::Arc::new(vouch_store::SqliteStore::open(&dir.join("records/vouch.db")).await?);
    let r = vouch_store::bench_records(sqlite, &cfg).await?;
    t.rows.push(Row::measured(
        SQLITE,
        Figure::rate(r.per_sec),
        Figure::rate(fsyncs),
        Target::RateAtLeast {
            per_second: 10_000.0,
        },
        how(&r),
    ));
    match &args.database_url {
        Some(url) => {
            let pg: std::sync::Arc<dyn vouch_store::Store> =
                std::sync::Arc::new(vouch_store::PgStore::connect(url).await?);
            let r = vouch_store::bench_records(pg, &cfg).await?;
            t.rows.push(Row::measured(
                POSTGRES,
                Figure::rate(r.per_sec),
                Figure::rate(fsyncs),
                Target::None,
                how(&r) + " (PostgreSQL's disk may differ)",
            ));
        }
        None => t.rows.push(Row::skipped(
            POSTGRES,
            Target::None,
            "skipped (no --database-url)",
        )),
    }

    let s = micro::svid((n * 10).clamp(50, 5000))?;
    t.rows.push(Row::measured(
        SVID,
        Figure::rate(1.0 / s.issue.as_secs_f64()),
        Figure::rate(1.0 / s.sign.as_secs_f64()),
        Target::RatioAtLeast { ratio: 0.5 },
        format!(
            "{} SVIDs of {} bytes built, signed (ECDSA P-256) and encoded by the trust-domain \
             CA; ceiling: raw ECDSA P-256 signatures over as many bytes",
            s.n, s.der_bytes
        ),
    ));
    let (frost, ed) = micro::quorum(n.clamp(10, 2000), dir)?;
    t.rows.push(Row::measured(
        QUORUM,
        Figure::micros(frost),
        Figure::micros(ed),
        Target::None,
        "commitments, two shares and the aggregate over a 900-byte result; ceiling: one \
         Ed25519 signature",
    ));
    let pq = micro::pq_signature(n.clamp(10, 2000), RESULT_BYTES)?;
    t.rows.push(Row::measured(
        PQ,
        Figure::micros(pq.mldsa_sign + pq.mldsa_verify),
        Figure::micros(pq.ed_sign + pq.ed_verify),
        Target::None,
        format!(
            "one ML-DSA-65 signature ({} bytes) and its verification over a {}-byte result, \
             the verifier's and a relying party's added work per result with pq_signatures; \
             ceiling: Ed25519 sign + verify of the same bytes",
            pq.mldsa_sig_bytes, pq.message_bytes
        ),
    ));
    // What the attest path pays for observability: four stage timers and histograms, the
    // attestation counter, the request id and its span; against the pipeline's repeat
    // appraisal, the cheapest attestation there is.
    let tb = vouch_server::bench_telemetry(n.clamp(1000, 100_000) * 10);
    t.rows.push(Row::measured(
        TELEMETRY,
        Figure::micros(tb.metrics + tb.request),
        Figure::micros(p.appraise_held),
        Target::ShareAtMost { share: 0.05 },
        format!(
            "{} rounds: metrics {:.2} µs (4 stage timers + histograms, the attestation \
             counter), request id {:.2} µs (header checked or made, route, span, echo), no log \
             subscriber; against the pipeline's repeat appraisal above",
            tb.n,
            tb.metrics.as_secs_f64() * 1e6,
            tb.request.as_secs_f64() * 1e6,
        ),
    ));
    t.context.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map_or(0, |c| c.get())
            .into(),
    );
    Ok(t)
}

/// The rows that need the verifiers running: repeat, changed, TPM, latency.
async fn attestation_rows(
    args: &BenchArgs,
    dir: &std::path::Path,
    cluster: &Cluster,
    n: usize,
    concurrency: usize,
) -> Result<(Table, vouch_core::SoftwareMeasurements)> {
    let template = Template::enroll(cluster, dir).await?;
    let clients = cluster.clients()?;
    let raw = cluster::raw_signature_cost(template.payload_len, template.result_len, 2000)?;
    // A repeat sends its unchanged parts by digest: its ceiling is the signature work over the
    // payload it actually sends.
    let repeat_payload = vouch_evidence::sign_software_evidence(
        template.agent.key(),
        &template.agent.enrollment().key_id,
        &cluster::measurements_for(
            &template.measurements,
            "n".repeat(120),
            None,
            &template.held,
        ),
    )?
    .payload
    .len();
    let raw_repeat = cluster::raw_signature_cost(repeat_payload, template.result_len, 2000)?;
    let mut t = Table::default();
    let backend = if args.database_url.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    for (k, v) in [
        ("store", serde_json::json!(backend)),
        ("replicas", cluster.running.len().into()),
        ("attestations", n.into()),
        ("concurrency", concurrency.into()),
        ("evidence_payload_bytes", template.payload_len.into()),
        ("processes", template.measurements.processes.len().into()),
    ] {
        t.context.insert(k.into(), v);
    }

    let repeat = cluster::full_path(&clients, &template, n, concurrency, false).await?;
    t.rows.push(Row::measured(
        REPEAT,
        Figure::micros(repeat.per_attestation()),
        Figure::micros(raw_repeat),
        Target::RatioAtMost { ratio: 2.0 },
        format!(
            "wall time per attestation: {} attestations by {concurrency} clients ({:.0}/s, \
             client latency p50 {:.2} ms, p99 {:.2} ms), each sign + attest over TLS with the \
             nonce the previous result gave (a challenge only for the first), unchanged parts \
             by digest, appraisal and the result committed to the {backend} store; ceiling: \
             one Ed25519 verify of the {repeat_payload}-byte payload sent (of {} in full) + one \
             Ed25519 signature of the result, single-threaded",
            repeat.n,
            repeat.n as f64 / repeat.wall.as_secs_f64(),
            ms(repeat.quantile(0.5)),
            ms(repeat.quantile(0.99)),
            template.payload_len,
        ),
    ));
    let changed = cluster::full_path(&clients, &template, n, concurrency, true).await?;
    t.rows.push(Row::measured(
        CHANGED,
        Figure::micros(changed.per_attestation()),
        Figure::micros(raw),
        Target::RatioAtMost { ratio: 4.0 },
        "as the row above, with a process added to the claims of every attestation (the \
         process table in full, the other parts by digest); ceiling: the signature work over \
         the full payload",
    ));

    if args.no_tpm {
        t.rows.push(Row::skipped(
            TPM,
            Target::RatioAtMost { ratio: 2.0 },
            "skipped (--no-tpm)",
        ));
    } else {
        match tpm::run(cluster, dir, n.min(300)).await {
            Ok(Some(r)) => t.rows.push(Row::measured(
                TPM,
                Figure::micros(r.per_attestation),
                Figure::micros(r.raw),
                Target::RatioAtMost { ratio: 2.0 },
                format!(
                    "median of {} sequential challenge + attest round trips of an RSA-2048 AK \
                     quote over 8 PCRs (swtpm; the quote itself is the agent's time, not \
                     counted), results {}; ceiling: RSA-2048 verify + Ed25519 verify of the \
                     evidence + Ed25519 signature of the result",
                    r.n, r.status
                ),
            )),
            Ok(None) => t.rows.push(Row::skipped(
                TPM,
                Target::RatioAtMost { ratio: 2.0 },
                "skipped (no swtpm)",
            )),
            Err(e) => t.rows.push(Row::skipped(
                TPM,
                Target::RatioAtMost { ratio: 2.0 },
                format!("skipped: {e:#}"),
            )),
        }
    }

    let first = cluster.running.first().map(|r| r.base_url.clone());
    let un = cluster::unloaded(
        first.as_deref().unwrap_or_default(),
        cluster.ca_cert.as_deref(),
        &template,
        n,
    )
    .await?;
    let how = format!(
        "{} sequential attestations by one client on one keep-alive connection: each POST \
         /v1/attest round trip (body serialised before the clock starts) minus the median GET \
         /healthz round trip on the same connection ({:.0} µs); includes sending the body, so \
         an upper bound; ceiling: the raw signature work above",
        un.server.len(),
        un.noop.as_secs_f64() * 1e6
    );
    t.rows.push(Row::measured(
        P50,
        Figure::micros(cluster::quantile(&un.server, 0.5)),
        Figure::micros(raw),
        Target::MicrosBelow { micros: 1000.0 },
        how,
    ));
    t.rows.push(Row::measured(
        P99,
        Figure::micros(cluster::quantile(&un.server, 0.99)),
        Figure::micros(raw),
        Target::MicrosBelow { micros: 3000.0 },
        "",
    ));
    let m = (*template.measurements).clone();
    Ok((t, m))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `vouch bench --svid`: X.509-SVIDs issued per second by the trust-domain CA against raw
/// ECDSA P-256 signatures over a message of the same size, in one run; and the route's work
/// after its reads since issue 15 part 7 (issue, record the SVID and append the audit event in
/// one transaction) against before (issue, append the audit event).
async fn svid_report(n: usize, json: bool) -> Result<ExitCode> {
    let s = micro::svid(n)?;
    let dir = tempfile_dir()?.join("svid");
    let recorded = micro::svid_recorded(n, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (alone, recorded) = recorded?;
    let per = |d: Duration| d.as_secs_f64();
    let (issue_per_s, sign_per_s) = (1.0 / per(s.issue), 1.0 / per(s.sign));
    let ratio = per(s.issue) / per(s.sign);
    let record_ratio = per(recorded) / per(alone);
    if json {
        output::json(&serde_json::json!({
            "n": s.n,
            "svid_der_bytes": s.der_bytes,
            "svids_per_second": issue_per_s,
            "ecdsa_p256_signs_per_second": sign_per_s,
            "issue_over_sign": ratio,
            "issue_and_audit_us": per(alone) * 1e6,
            "issue_record_and_audit_us": per(recorded) * 1e6,
            "with_record_over_without": record_ratio,
        }))?;
    } else {
        println!(
            "X.509-SVID issuance, {} SVIDs of {} bytes",
            s.n, s.der_bytes
        );
        println!(
            "  issue          {issue_per_s:>10.0}/s  {:>8.1} µs each",
            per(s.issue) * 1e6
        );
        println!(
            "  ECDSA P-256    {sign_per_s:>10.0}/s  {:>8.1} µs each (raw sign)",
            per(s.sign) * 1e6
        );
        println!("  ratio          {ratio:.2}x the raw signature");
        println!(
            "  issue+audit    {:>10.0}/s  {:>8.1} µs each (before: SQLite, synchronous=FULL)",
            1.0 / per(alone),
            per(alone) * 1e6
        );
        println!(
            "  +record        {:>10.0}/s  {:>8.1} µs each (since: + the INSERT, same commit)",
            1.0 / per(recorded),
            per(recorded) * 1e6
        );
        println!("  ratio          {record_ratio:.2}x before");
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch bench --quorum`: the signing work of a 2-of-3 FROST quorum result against one Ed25519
/// signature over the same message, in one run.
fn quorum_report(n: usize, json: bool) -> Result<ExitCode> {
    let (frost, ed) = micro::quorum(n, &tempfile_dir()?)?;
    let n = n.max(10);
    let ratio = frost.as_secs_f64() / ed.as_secs_f64();
    if json {
        output::json(&serde_json::json!({
            "n": n, "frost_2_of_3_us": frost.as_secs_f64() * 1e6,
            "ed25519_us": ed.as_secs_f64() * 1e6, "ratio": ratio,
        }))?;
    } else {
        println!("quorum result signing, {n} rounds, 900-byte message");
        println!(
            "  FROST 2-of-3 (commit, sign, aggregate)  {:>8.1} µs",
            frost.as_secs_f64() * 1e6
        );
        println!(
            "  Ed25519 (one signer)                    {:>8.1} µs",
            ed.as_secs_f64() * 1e6
        );
        println!("  ratio                                   {ratio:.1}x");
    }
    Ok(ExitCode::SUCCESS)
}

/// `vouch bench --pq`: ML-DSA-65 against Ed25519, one signature and one verification of a
/// result each, in one run.
/// `vouch bench --anomalies`: the fleet anomaly detector's work per attestation against the
/// appraisal pipeline's, both over this machine's real measurements, in one run.
async fn anomalies_report(n: usize, json: bool) -> Result<ExitCode> {
    let mut collector = vouch_evidence::SoftwareCollector::new(vouch_evidence::CollectConfig {
        workload_name: "bench".into(),
        exe: std::env::current_exe()?,
        files: Vec::new(),
        image_digest: None,
        root: "/".into(),
    });
    let m = collector.collect("template", vouch_server::unix_now())?;
    let dir = tempfile_dir()?.join("anomalies");
    std::fs::create_dir_all(&dir)?;
    let store = std::sync::Arc::new(vouch_store::SqliteStore::open(&dir.join("p.db")).await?);
    let p = vouch_verifier::bench::pipeline(store, m.clone(), n.clamp(10, 2000)).await;
    let _ = std::fs::remove_dir_all(&dir);
    let p = p?;
    let a =
        vouch_server::bench_anomalies(&m, 50, n.clamp(10, 20_000)).map_err(anyhow::Error::msg)?;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let steady = us(a.steady) / us(p.appraise_held).max(1e-9);
    let full = us(a.full) / us(p.appraise_changed).max(1e-9);
    if json {
        output::json(&serde_json::json!({
            "n": a.n, "nodes": a.nodes, "measurements": a.measurements,
            "detector_steady_us": us(a.steady), "detector_full_us": us(a.full),
            "pipeline_repeat_us": us(p.appraise_held), "pipeline_changed_us": us(p.appraise_changed),
            "steady_share": steady, "full_share": full,
        }))?;
    } else {
        println!(
            "fleet anomaly detector, {} attestations, group of {} nodes, {} measurements a scan",
            a.n, a.nodes, a.measurements
        );
        println!(
            "  parts unchanged   {:>9.1} µs   appraisal pipeline, repeat  {:>9.1} µs   share {:.3}",
            us(a.steady),
            us(p.appraise_held),
            steady
        );
        println!(
            "  every part new    {:>9.1} µs   appraisal pipeline, changed {:>9.1} µs   share {:.3}",
            us(a.full),
            us(p.appraise_changed),
            full
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn pq_report(n: usize, json: bool) -> Result<ExitCode> {
    let c = micro::pq_signature(n, RESULT_BYTES)?;
    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
    let ratio = |a: std::time::Duration, b: std::time::Duration| {
        a.as_secs_f64() / b.as_secs_f64().max(1e-12)
    };
    let total = ratio(c.mldsa_sign + c.mldsa_verify, c.ed_sign + c.ed_verify);
    if json {
        output::json(&serde_json::json!({
            "n": c.n, "message_bytes": c.message_bytes,
            "mldsa65_sign_us": us(c.mldsa_sign), "mldsa65_verify_us": us(c.mldsa_verify),
            "ed25519_sign_us": us(c.ed_sign), "ed25519_verify_us": us(c.ed_verify),
            "mldsa65_signature_bytes": c.mldsa_sig_bytes,
            "sign_ratio": ratio(c.mldsa_sign, c.ed_sign),
            "verify_ratio": ratio(c.mldsa_verify, c.ed_verify),
            "sign_plus_verify_ratio": total,
        }))?;
    } else {
        println!(
            "post-quantum result signature, {} rounds, {}-byte result",
            c.n, c.message_bytes
        );
        println!("                 sign        verify");
        println!(
            "  ML-DSA-65  {:>8.1} µs  {:>8.1} µs  ({} bytes)",
            us(c.mldsa_sign),
            us(c.mldsa_verify),
            c.mldsa_sig_bytes
        );
        println!(
            "  Ed25519    {:>8.1} µs  {:>8.1} µs  (64 bytes)",
            us(c.ed_sign),
            us(c.ed_verify)
        );
        println!(
            "  ratio      {:>8.1}x    {:>8.1}x    sign + verify {total:.1}x",
            ratio(c.mldsa_sign, c.ed_sign),
            ratio(c.mldsa_verify, c.ed_verify)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A page of `n` revocation records from a real verifier's feed over HTTPS, asked for the
/// first time (every record signed under the replica's certificate and co-signed with
/// ML-DSA-65) and then again (the signed forms kept), against the raw signatures of a page.
async fn feed_report(n: usize, json: bool) -> Result<ExitCode> {
    let n = n.clamp(10, 1000);
    let dir = tempfile_dir()?.join("feed");
    std::fs::create_dir_all(&dir)?;
    let out = feed_measure(n, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (cold, warm) = out?;
    let raw = micro::pq_signature(n.min(200), 600)?;
    let per_record = raw.ed_sign + raw.mldsa_sign;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let per = |d: Duration| us(d) / n as f64;
    if json {
        output::json(&serde_json::json!({
            "records": n,
            "first_page_us": us(cold), "repeat_page_us": us(warm),
            "first_per_record_us": per(cold), "repeat_per_record_us": per(warm),
            "raw_signatures_per_record_us": us(per_record),
            "first_ratio": per(cold) / us(per_record).max(1e-9),
            "repeat_ratio": per(warm) / us(per_record).max(1e-9),
        }))?;
    } else {
        println!("revocation feed, a page of {n} records over HTTPS (ML-DSA-65 on)");
        println!(
            "  first time   {:>10.1} ms  {:>8.1} µs per record",
            us(cold) / 1e3,
            per(cold)
        );
        println!(
            "  again        {:>10.1} ms  {:>8.1} µs per record",
            us(warm) / 1e3,
            per(warm)
        );
        println!(
            "  raw signatures per record (Ed25519 + ML-DSA-65 sign): {:.1} µs; \
             first {:.2}x, again {:.3}x of it",
            us(per_record),
            per(cold) / us(per_record).max(1e-9),
            per(warm) / us(per_record).max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Start a verifier, revoke `n` results through its API, and time the feed's first and
/// (median of five) repeated page.
async fn feed_measure(n: usize, dir: &std::path::Path) -> Result<(Duration, Duration)> {
    let cluster = Cluster::start(dir, 1, None, |_| {}).await?;
    let out = async {
        let server = cluster.running.first().context("no replica")?;
        let ca = cluster.ca_cert.as_ref().context("no CA certificate")?;
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(ca)?)?])
            .build()?;
        let admin = std::fs::read_to_string(dir.join("r0/keys/admin.token"))?;
        for i in 0..n {
            let r = http
                .post(format!("{}/v1/revocations", server.base_url))
                .bearer_auth(admin.trim())
                .json(&serde_json::json!({
                    "kind": "svid", "target": format!("{:x}", 0xb000_0000_u64 + i as u64), "reason": "bench"
                }))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "revoking: {}", r.status());
        }
        let page = || async {
            let t = std::time::Instant::now();
            let body: serde_json::Value = http
                .get(format!(
                    "{}/v1/revocations?after=0&limit={n}",
                    server.base_url
                ))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let got = body["records_pq"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(got == n, "the page held {got} co-signed records, not {n}");
            Ok::<_, anyhow::Error>(t.elapsed())
        };
        let cold = page().await?;
        let mut again = Vec::new();
        for _ in 0..5 {
            again.push(page().await?);
        }
        again.sort();
        Ok((cold, again[2]))
    }
    .await;
    cluster.shutdown().await;
    out
}

/// A scratch directory for this process's benchmarks.
pub(crate) fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("vouch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
