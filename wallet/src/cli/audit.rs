//! `client audit`: the supply audit of a running committee. Every shard of every authority
//! reports its money; each authority's balances plus what is in flight between its shards
//! must equal its genesis plus the deposits it credited (see `fastpay_client::audit_supply`).
//! With `--settled`, nothing may stay in flight: the count is repeated while credits land.

use anyhow::{Result, bail};
use fastpay_client::AuthoritySupply;
use fastpay_wire::SUPPLY_RECOUNT;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// What the committee's supply reports showed.
pub struct SupplyAudit {
    /// Per authority, in committee order.
    pub authorities: Vec<AuthoritySupply>,
    /// The largest deposit total an authority reported.
    pub deposited: u128,
    /// Every fault found, in words (none: the audit passed).
    pub faults: Vec<String>,
}

impl SupplyAudit {
    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let authorities: Vec<Value> = self
            .authorities
            .iter()
            .map(|a| {
                json!({
                    "authority": a.authority.to_string(),
                    "complete": a.complete,
                    "genesis": a.genesis.to_string(),
                    "deposited": a.deposited.to_string(),
                    "held": a.held.to_string(),
                    "in_flight": a.in_flight.to_string(),
                    "balanced": a.balanced(),
                })
            })
            .collect();
        json!({ "authorities": authorities, "deposited": self.deposited.to_string() })
    }
}

/// Counts the committee's supply, repeating the count while credits are in flight when
/// `settled` asks for none (until `timeout`), and checks it.
pub fn audit_supply(cli: &super::Cli, settled: bool) -> Result<SupplyAudit> {
    let deadline = Instant::now() + cli.timeout;
    let mut network = cli.network()?;
    let authorities = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let answers = network.count_supply(left.max(Duration::from_millis(1)))?;
        let authorities = fastpay_client::audit_supply(&answers);
        let moving = authorities
            .iter()
            .filter(|a| a.complete && a.in_flight != 0)
            .count();
        // Shards recount at most every SUPPLY_RECOUNT: wait that long before asking again.
        let again = Instant::now() + SUPPLY_RECOUNT + Duration::from_millis(100);
        if !settled || moving == 0 || again >= deadline {
            break authorities;
        }
        eprintln!("audit: {moving} authorities have credits in flight; counting again");
        std::thread::sleep(again.saturating_duration_since(Instant::now()));
    };
    let committee = &cli.committee.committee;
    let mut faults = Vec::new();
    let mut complete_weight = 0;
    for a in &authorities {
        eprintln!(
            "authority {}: genesis {} + deposited {} = held {} + in flight {}{}",
            a.authority,
            a.genesis,
            a.deposited,
            a.held,
            a.in_flight,
            if a.complete {
                ""
            } else {
                " (some shards did not answer)"
            }
        );
        if !a.complete {
            continue;
        }
        complete_weight += committee.weight(&a.authority);
        if a.discrepancy() != 0 {
            faults.push(format!(
                "authority {} holds {} units more than its genesis and deposits explain",
                a.authority,
                a.discrepancy()
            ));
        }
        if settled && a.in_flight != 0 {
            faults.push(format!(
                "authority {} still has {} units in flight between its shards",
                a.authority, a.in_flight
            ));
        }
    }
    if complete_weight < committee.quorum_threshold() {
        faults.push(format!(
            "only authorities of weight {complete_weight} answered from every shard; a quorum is {}",
            committee.quorum_threshold()
        ));
    }
    let mut geneses: Vec<u128> = authorities
        .iter()
        .filter(|a| a.complete)
        .map(|a| a.genesis)
        .collect();
    geneses.dedup();
    if geneses.len() > 1 {
        faults.push(format!("authorities disagree on the genesis: {geneses:?}"));
    }
    let deposited = authorities.iter().map(|a| a.deposited).max().unwrap_or(0);
    Ok(SupplyAudit {
        authorities,
        deposited,
        faults,
    })
}

/// Prints `report` (one JSON line) and fails with every fault found.
pub fn finish(report: Value, faults: &[String]) -> Result<()> {
    let mut report = report;
    report["ok"] = Value::Bool(faults.is_empty());
    println!("{report}");
    if !faults.is_empty() {
        bail!("the audit failed: {}", faults.join("; "));
    }
    Ok(())
}
