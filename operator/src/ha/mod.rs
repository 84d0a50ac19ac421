//! High availability through Patroni: converging the members' shared configuration, restarts a
//! setting needs (replicas first, then a switchover, then the old primary), switchovers, and the
//! members' state. The same steps for `pgwarehouse local` and a cluster; only how a member's REST
//! API is reached differs.

pub mod rest;

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

pub use rest::{ClusterMember, Rest, RestError, cluster_from_any};

/// What a converge did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HaReport {
    /// Keys of the shared configuration changed (`postgresql.parameters.work_mem`, `ttl`, ...).
    pub changed: Vec<String>,
    /// Members restarted for a setting that needs it, in order.
    pub restarted: Vec<String>,
    /// The member that became primary so that the old one could restart.
    pub switched_to: Option<String>,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The merge patch (`PATCH /config`) that turns `current` into `desired`, and the keys it
/// changes; none when they agree. Values compare as text (Patroni keeps what it was given);
/// parameters no longer desired are removed (`null`), any other key Patroni or an admin set is
/// left alone.
pub fn config_patch(current: &Value, desired: &Value) -> Option<(Value, Vec<String>)> {
    fn walk(current: &Value, desired: &Value, path: &str, changed: &mut Vec<String>) -> Option<Value> {
        let (Some(desired), current) = (desired.as_object(), current.as_object()) else {
            return (text(current) != text(desired) || current.is_null() != desired.is_null()).then(|| desired.clone());
        };
        let empty = Map::new();
        let current = current.unwrap_or(&empty);
        let mut patch = Map::new();
        for (key, want) in desired {
            let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            let have = current.get(key).unwrap_or(&Value::Null);
            if let Some(part) = walk(have, want, &here, changed) {
                if !want.is_object() {
                    changed.push(here);
                }
                patch.insert(key.clone(), part);
            }
        }
        if path == "postgresql.parameters" {
            for key in current.keys().filter(|k| !desired.contains_key(*k)) {
                changed.push(format!("{path}.{key}"));
                patch.insert(key.clone(), Value::Null);
            }
        }
        (!patch.is_empty()).then_some(Value::Object(patch))
    }
    let mut changed = Vec::new();
    walk(current, desired, "", &mut changed).map(|patch| (patch, changed))
}

/// A member's own API, from the URL it publishes (`http://host:8008/patroni`).
pub fn member_rest(member: &ClusterMember) -> Option<Rest> {
    let url = member.api_url.as_deref()?;
    Some(Rest::new(url.strip_suffix("/patroni").unwrap_or(url)))
}

fn unreachable(member: &ClusterMember) -> RestError {
    RestError { url: member.name.clone(), message: "publishes no REST API address".into() }
}

/// Whether the members `cluster` lists as replicas stream from `primary`: `replicas` of them, and
/// (synchronous replication on) one of them chosen as the standby commits wait for.
async fn streaming_enough(primary: &ClusterMember, cluster: &[ClusterMember], replicas: usize) -> bool {
    let Some(rest) = member_rest(primary) else { return false };
    let Ok(connected) = rest.replication().await else { return false };
    let streaming: Vec<&ClusterMember> = cluster
        .iter()
        .filter(|m| m.is_running_replica())
        .filter(|m| connected.iter().any(|r| r.application_name == m.name && r.state == "streaming"))
        .collect();
    if streaming.len() < replicas {
        return false;
    }
    let synchronous = match rest.config().await {
        Ok(config) => !matches!(config.get("synchronous_mode"), None | Some(Value::Null) | Some(Value::Bool(false))),
        Err(_) => return false,
    };
    !synchronous
        || replicas == 0
        || streaming.iter().any(|m| matches!(m.role.as_str(), "sync_standby" | "quorum_standby"))
}

/// Waits until one member is a running primary and `replicas` others stream from it (one of them
/// chosen as synchronous standby when the stack replicates synchronously). Returns the primary
/// and the members.
pub async fn wait_for_members(
    members: &[Rest],
    replicas: usize,
    timeout: Duration,
) -> Result<(ClusterMember, Vec<ClusterMember>), RestError> {
    let deadline = Instant::now() + timeout;
    loop {
        let cluster = cluster_from_any(members).await;
        if let Ok(cluster) = &cluster
            && let Some(primary) = cluster.iter().find(|m| m.is_primary() && m.state == "running")
            && streaming_enough(primary, cluster, replicas).await
        {
            return Ok((primary.clone(), cluster.clone()));
        }
        if Instant::now() > deadline {
            let seen = match cluster {
                Ok(cluster) => {
                    cluster.iter().map(|m| format!("{} {} {}", m.name, m.role, m.state)).collect::<Vec<_>>().join(", ")
                }
                Err(e) => e.to_string(),
            };
            return Err(RestError {
                url: members.first().map(|m| m.base.clone()).unwrap_or_default(),
                message: format!(
                    "no primary with {replicas} streaming replica(s) within {timeout:?} (members: {seen})"
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Brings the shared configuration to `desired` through the leader, then restarts the members
/// the change left waiting: replicas one at a time, then a switchover to a streaming replica and
/// the old primary last, so that the primary's pause is a switchover's, not a restart's. Only a
/// change made here restarts anything: a member that stays pending (say, a setting Patroni
/// cannot apply) is not restarted again on every converge.
pub async fn converge(members: &[Rest], desired: &Value, loop_wait: Duration) -> Result<HaReport, RestError> {
    let mut cluster = cluster_from_any(members).await?;
    let leader = cluster.iter().find(|m| m.is_primary()).ok_or_else(|| RestError {
        url: members.first().map(|m| m.base.clone()).unwrap_or_default(),
        message: "no member holds the leader lock".into(),
    })?;
    let leader_rest = member_rest(leader).ok_or_else(|| unreachable(leader))?;
    let mut report = HaReport::default();
    let Some((patch, changed)) = config_patch(&leader_rest.config().await?, desired) else {
        return Ok(report);
    };
    leader_rest.patch_config(&patch).await?;
    report.changed = changed;
    // Members apply the new configuration on their next loop; a setting that needs a restart
    // then shows as pending.
    let settle = Instant::now() + loop_wait + Duration::from_secs(3);
    loop {
        cluster = cluster_from_any(members).await?;
        if cluster.iter().all(|m| m.pending_restart) || Instant::now() >= settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    restart_pending(members, &cluster, loop_wait, &mut report).await?;
    Ok(report)
}

/// Restarts the members `cluster` shows pending: replicas first, the primary after handing its
/// role over.
async fn restart_pending(
    members: &[Rest],
    cluster: &[ClusterMember],
    loop_wait: Duration,
    report: &mut HaReport,
) -> Result<(), RestError> {
    for replica in cluster.iter().filter(|m| !m.is_primary() && m.pending_restart) {
        member_rest(replica).ok_or_else(|| unreachable(replica))?.restart_pending().await?;
        report.restarted.push(replica.name.clone());
    }
    let Some(primary) = cluster.iter().find(|m| m.is_primary() && m.pending_restart) else {
        return lower_from_the_primary(members, loop_wait, report).await;
    };
    let primary_rest = member_rest(primary).ok_or_else(|| unreachable(primary))?;
    let replicas = cluster.iter().filter(|m| !m.is_primary()).count();
    // The restarted replicas stream again before one of them takes over.
    let (_, now) = wait_for_members(members, replicas, Duration::from_secs(120)).await?;
    let candidate = now
        .iter()
        .filter(|m| m.is_running_replica())
        .min_by_key(|m| (m.role != "sync_standby", m.lag_bytes().unwrap_or(u64::MAX)))
        .map(|m| m.name.clone());
    if let Some(candidate) = candidate {
        hand_over(members, &primary_rest, &primary.name, Some(&candidate), replicas).await?;
        report.switched_to = Some(candidate);
    }
    let old = cluster_from_any(members).await?;
    if old.iter().any(|m| m.name == primary.name && m.pending_restart) {
        primary_rest.restart_pending().await?;
    }
    report.restarted.push(primary.name.clone());
    lower_from_the_primary(members, loop_wait, report).await
}

/// A hot standby runs `max_connections` and its kin at no less than its primary's value, so
/// after a decrease restarted replicas (and a replica promoted by the switchover) stay pending
/// with the old value: the primary then restarts in place (handing the role on would not help:
/// every other member holds the old value too), and the replicas after it.
async fn lower_from_the_primary(members: &[Rest], loop_wait: Duration, report: &mut HaReport) -> Result<(), RestError> {
    if report.restarted.is_empty() {
        return Ok(());
    }
    let replicas = members.len() - 1;
    let pending = || async {
        let (primary, _) = wait_for_members(members, replicas, Duration::from_secs(120)).await?;
        // Patroni looks at its server's settings again on its next loop.
        tokio::time::sleep(loop_wait + Duration::from_secs(3)).await;
        let now = cluster_from_any(members).await?;
        Ok::<_, RestError>((primary, now.into_iter().filter(|m| m.pending_restart).collect::<Vec<_>>()))
    };
    let (primary, still) = pending().await?;
    if still.is_empty() {
        return Ok(());
    }
    member_rest(&primary).ok_or_else(|| unreachable(&primary))?.restart().await?;
    report.restarted.push(primary.name.clone());
    let (_, still) = pending().await?;
    for replica in still.iter().filter(|m| !m.is_primary()) {
        member_rest(replica).ok_or_else(|| unreachable(replica))?.restart_pending().await?;
        report.restarted.push(replica.name.clone());
    }
    Ok(())
}

/// A planned switchover to `to` (any healthy replica when none); returns the new primary.
pub async fn switchover(members: &[Rest], to: Option<&str>) -> Result<String, RestError> {
    let cluster = cluster_from_any(members).await?;
    let leader = cluster.iter().find(|m| m.is_primary()).ok_or_else(|| RestError {
        url: members.first().map(|m| m.base.clone()).unwrap_or_default(),
        message: "no member holds the leader lock".into(),
    })?;
    if let Some(to) = to
        && !cluster.iter().any(|m| m.name == to && !m.is_primary())
    {
        let replicas: Vec<&str> = cluster.iter().filter(|m| !m.is_primary()).map(|m| m.name.as_str()).collect();
        return Err(RestError {
            url: leader.name.clone(),
            message: format!("{to:?} is not a replica of this stack (replicas: {})", replicas.join(", ")),
        });
    }
    let leader_rest = member_rest(leader).ok_or_else(|| unreachable(leader))?;
    let replicas = cluster.iter().filter(|m| !m.is_primary()).count();
    hand_over(members, &leader_rest, &leader.name, to, replicas).await
}

/// Asks `leader` to switch over and waits until another member is the primary with every
/// replica streaming again. Patroni 4 may drop the request's connection while it demotes
/// itself: the outcome is read from the cluster, not from the answer.
async fn hand_over(
    members: &[Rest],
    leader_rest: &Rest,
    leader: &str,
    to: Option<&str>,
    replicas: usize,
) -> Result<String, RestError> {
    let asked = leader_rest.switchover(leader, to).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (primary, _) = wait_for_members(members, replicas, remaining).await?;
        if primary.name != leader {
            return Ok(primary.name);
        }
        // Patroni's refusal (an HTTP status, "POST /switchover: 412 ...") ends it; a lost
        // connection does not.
        if let Err(e) = &asked
            && e.message.starts_with("POST ")
        {
            return Err(e.clone());
        }
        if Instant::now() > deadline {
            return Err(RestError { url: leader_rest.base.clone(), message: format!("{leader} is still the primary") });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests;
