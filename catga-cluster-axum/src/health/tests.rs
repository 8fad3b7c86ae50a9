//! Tests of the health verdicts.

use catga_cluster_core::Endpoint;

use super::*;

fn leader(id: u64) -> Option<LeaderInfo> {
    Some(LeaderInfo {
        id: NodeId::new(id),
        endpoint: Some(Endpoint::parse("http://127.0.0.1:1").unwrap()),
    })
}

fn eval(snapshot: &Leadership, facts: &ProbeFacts, flaps: usize, draining: bool) -> HealthReport {
    evaluate(
        NodeId::new(1),
        snapshot,
        facts,
        flaps,
        draining,
        &HealthOptions::default(),
    )
}

#[test]
fn verdicts() {
    let running = ProbeFacts::running();
    let follower = Leadership {
        leader: leader(2),
        ..Leadership::default()
    };
    assert_eq!(
        eval(&follower, &running, 0, false).status,
        HealthStatus::Healthy
    );
    let r = eval(&follower, &running, 3, false);
    assert_eq!(
        (r.status, r.reason),
        (
            HealthStatus::Degraded,
            Some(HealthReason::ElectionsFlapping)
        )
    );
    let r = eval(&follower, &running.clone().apply_lag(5000), 0, false);
    assert_eq!(r.reason, Some(HealthReason::Lagging));
    let r = eval(&follower, &running, 0, true);
    assert_eq!(
        (r.status, r.reason),
        (HealthStatus::Unhealthy, Some(HealthReason::Draining))
    );
    let r = eval(&Leadership::default(), &running, 0, false);
    assert_eq!(
        (r.status, r.reason),
        (HealthStatus::Unhealthy, Some(HealthReason::NoLeader))
    );
    assert!(r.live);
    let r = eval(&follower, &running.clone().fatal(true), 0, false);
    assert_eq!(
        (r.status, r.reason, r.live),
        (
            HealthStatus::Unhealthy,
            Some(HealthReason::RaftFailed),
            false
        )
    );
    assert!(!r.detail.unwrap().contains('/'));
    let r = eval(&follower, &running.clone().stopped(true), 0, false);
    assert_eq!((r.reason, r.live), (Some(HealthReason::RaftStopped), true));

    let lapsed = Leadership {
        role: Role::Leader,
        leader: leader(1),
        lease_valid: false,
        ..Leadership::default()
    };
    let r = eval(&lapsed, &running, 0, false);
    assert_eq!(
        (r.status, r.reason),
        (HealthStatus::Degraded, Some(HealthReason::LeaseExpired))
    );
    let handing = Leadership {
        lease_valid: true,
        transferring: true,
        ..lapsed.clone()
    };
    assert_eq!(
        eval(&handing, &running, 0, false).reason,
        Some(HealthReason::Transferring)
    );
    let leading = Leadership {
        lease_valid: true,
        ..lapsed
    };
    let r = eval(&leading, &running, 0, false);
    assert_eq!((r.status, r.is_leader), (HealthStatus::Healthy, true));
}

#[test]
fn every_reason_is_in_the_readiness_schema() {
    let mut schemas = crate::api::response_schemas();
    schemas.subschema_for::<crate::api::ReadyDto>();
    let schema = serde_json::Value::from(schemas.take_definitions(true)).to_string();
    for reason in [
        HealthReason::RaftFailed,
        HealthReason::RaftStopped,
        HealthReason::Draining,
        HealthReason::NoLeader,
        HealthReason::NoQuorum,
        HealthReason::LeaseExpired,
        HealthReason::Transferring,
        HealthReason::VoterUnreachable,
        HealthReason::Lagging,
        HealthReason::ElectionsFlapping,
    ] {
        assert!(
            schema.contains(&format!("\"{}\"", reason.slug())),
            "{}",
            reason.slug()
        );
    }
}

#[test]
fn quorum_verdicts() {
    let leading = Leadership {
        role: Role::Leader,
        leader: leader(1),
        lease_valid: true,
        ..Leadership::default()
    };
    let one_down = ProbeFacts::running().unreachable_voters(vec![NodeId::new(3)]);
    let r = eval(&leading, &one_down, 0, false);
    assert_eq!(
        (r.status, r.reason),
        (HealthStatus::Degraded, Some(HealthReason::VoterUnreachable))
    );
    assert_eq!(r.reason.unwrap().slug(), "voter-unreachable");
    assert!(r.detail.unwrap().contains("node 3"));

    let lost = one_down
        .unreachable_voters(vec![NodeId::new(2), NodeId::new(3)])
        .quorum_reachable(false);
    let r = eval(&leading, &lost, 0, false);
    assert_eq!(
        (r.status, r.reason),
        (HealthStatus::Unhealthy, Some(HealthReason::NoQuorum))
    );
    assert_eq!(r.reason.unwrap().slug(), "no-quorum");
    assert!(r.detail.unwrap().contains("node 2, node 3"));
    assert!(r.live, "a lost quorum is no reason to restart");

    let follower = Leadership {
        leader: leader(2),
        ..Leadership::default()
    };
    let silent = ProbeFacts::running().quorum_reachable(false);
    let r = eval(&follower, &silent, 0, false);
    assert_eq!(r.reason, Some(HealthReason::NoQuorum));
    assert!(r.detail.unwrap().contains("leader"));
    // No leader at all stays `no-leader`.
    let r = eval(&Leadership::default(), &silent, 0, false);
    assert_eq!(r.reason, Some(HealthReason::NoLeader));
}
