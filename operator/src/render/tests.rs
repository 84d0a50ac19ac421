//! Golden files: a change in rendered output is a reviewed diff. Regenerate with
//! `PGW_UPDATE_GOLDEN=1 cargo test -p pgwarehouse --lib render`.

use std::path::PathBuf;

use super::*;
use crate::template::load_manifest;
use crate::validate::validate;

fn quickstart() -> ValidatedStack {
    let mut stack = load_manifest(include_str!("../../../stack-templates/examples/quickstart.yaml")).unwrap();
    stack.metadata.namespace = Some("analytics".into());
    stack.metadata.uid = Some("8d3c1f2e-0000-4000-8000-000000000001".into());
    validate(&stack).unwrap()
}

fn passwords() -> StackPasswords {
    StackPasswords {
        superuser: "golden-password".into(),
        replication: "golden-replication".into(),
        rewind: "golden-rewind".into(),
    }
}

fn golden(name: &str, rendered: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/render/golden").join(format!("{name}.yaml"));
    if std::env::var_os("PGW_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == rendered,
        "{name} differs from {}; review and regenerate with PGW_UPDATE_GOLDEN=1:\n{rendered}",
        path.display()
    );
}

fn yaml<T: serde::Serialize>(object: &T) -> String {
    serde_saphyr::to_string(object).unwrap()
}

#[test]
fn every_object_matches_its_golden_file() {
    let objects = objects(&quickstart(), &passwords());
    golden("secret", &yaml(&objects.secret));
    golden("configmap", &yaml(&objects.configmap));
    golden("service-headless", &yaml(&objects.headless));
    golden("service-client", &yaml(&objects.client));
    golden("pvc-backup", &yaml(objects.backup_claim.as_ref().unwrap()));
    golden("statefulset", &yaml(&objects.statefulset));
}

#[test]
fn a_config_change_rolls_the_pod_and_storage_can_be_released() {
    let stack = quickstart();
    let before = statefulset(&stack);
    let mut changed = stack.clone();
    changed.spec.postgres.parameters.insert("work_mem".into(), "256MB".into());
    changed.spec.postgres.storage.retain_on_delete = Some(false);
    let after = statefulset(&changed);
    let checksum = |s: &StatefulSet| {
        s.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()
            [statefulset::CONFIG_CHECKSUM_ANNOTATION]
            .clone()
    };
    assert_ne!(checksum(&before), checksum(&after));
    let policy = |s: &StatefulSet| s.spec.as_ref().unwrap().persistent_volume_claim_retention_policy.clone().unwrap();
    assert_eq!(policy(&before).when_deleted.as_deref(), Some("Retain"));
    assert_eq!(policy(&after).when_deleted.as_deref(), Some("Delete"));
    // The superuser Secret lives exactly as long as the data it opens.
    assert!(superuser_secret(&stack, &passwords()).metadata.owner_references.is_none());
    assert!(superuser_secret(&changed, &passwords()).metadata.owner_references.is_some());
}

#[test]
fn objects_outside_a_cluster_have_no_owner() {
    let mut stack = quickstart();
    stack.uid = None;
    assert!(configmap(&stack).metadata.owner_references.is_none());
    assert_eq!(owner_reference(&quickstart()).unwrap().uid, "8d3c1f2e-0000-4000-8000-000000000001");
}

#[test]
fn the_stack_image_provides_what_the_statefulset_expects() {
    let dockerfile = include_str!("../../../stack-templates/image/Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    assert!(lines.contains(&format!("USER {POSTGRES_UID}:{POSTGRES_UID}").as_str()), "the image runs as the pod's uid");

    let stack = quickstart();
    let statefulset = statefulset(&stack);
    let container = &statefulset.spec.unwrap().template.spec.unwrap().containers[0];
    let pgdata = container.env.as_ref().unwrap().iter().find(|e| e.name == "PGDATA").unwrap().value.clone().unwrap();
    assert!(pgdata.starts_with(DATA_MOUNT), "PGDATA lies on the volume");
    assert!(lines.contains(&format!("ENV PGDATA={pgdata}").as_str()), "the image and the pod agree on PGDATA");

    let major = lines.iter().find_map(|l| l.strip_prefix("ARG PG_MAJOR=")).unwrap();
    assert!(container.image.as_deref().unwrap().ends_with(&format!(":{major}")), "the default image tag is the major");
    // Every extension the datawarehouse template creates is installed by the image; ours are
    // built from extensions/ in this repository, never fetched from elsewhere.
    let built = lines.iter().find_map(|l| l.strip_prefix("RUN for extension in ")).unwrap();
    let built: Vec<&str> = built.trim_end_matches("; do \\").split(' ').collect();
    for fdw in &built {
        let crate_manifest = format!("{}/../extensions/{fdw}/Cargo.toml", env!("CARGO_MANIFEST_DIR"));
        assert!(std::path::Path::new(&crate_manifest).exists(), "the image builds {fdw}, which extensions/ lacks");
    }
    assert!(
        dockerfile.contains("COPY extensions/ ./") && !dockerfile.contains("git clone"),
        "built from this repository"
    );
    for extension in &stack.extensions {
        let provided = match extension.name.as_str() {
            "pg_cron" => dockerfile.contains("postgresql-${PG_MAJOR}-cron"),
            "pg_partman" => dockerfile.contains("postgresql-${PG_MAJOR}-partman"),
            "postgres_fdw" | "pg_stat_statements" => dockerfile.contains("FROM postgres:${PG_MAJOR}"),
            other => built.contains(&other),
        };
        assert!(provided, "the image lacks {}", extension.name);
    }
    assert_eq!(built, ["prometheus_fdw", "clerk_fdw"]);
    // The preloaded libraries exist in the image.
    let conf = config::settings(&stack);
    for library in conf["shared_preload_libraries"].split(',') {
        assert!(["pg_cron", "pg_stat_statements"].contains(&library), "{library} is not provided");
    }
    // A distributed stack's workers run the same image, which builds Citus from this repository.
    let distributed = config::worker_settings(&distributed_example());
    assert!(distributed["shared_preload_libraries"].starts_with("citus,"));
    assert!(dockerfile.contains("COPY third_party/citus/ ./") && dockerfile.contains("COPY --from=citus-build"));
}

/// A stack backing up to S3 and bootstrapped from another stack's volume repository.
fn restored_to_s3() -> ValidatedStack {
    let text = "kind: DataWarehouseStack\nmetadata: {name: copy, namespace: analytics}\nspec:\n  backup:\n    \
                repository:\n      s3: {bucket: wh-backups, endpoint: 'minio.infra:9000', region: us-east-1, \
                uriStyle: path, verifyTLS: false, credentialsSecretRef: {name: s3-creds}}\n  bootstrap:\n    \
                restore:\n      repository: {volume: {}}\n      stack: quickstart\n      \
                target: '2026-11-20T10:00:00Z'\n";
    validate(&load_manifest(text).unwrap()).unwrap()
}

#[test]
fn backups_add_archiving_the_agent_and_the_repository_volume() {
    let stack = quickstart();
    let conf = &configmap(&stack).data.unwrap();
    assert!(conf["postgresql.conf"].contains("archive_mode = 'on'\n"));
    assert!(conf["postgresql.conf"].contains(
        "archive_command = '/usr/bin/pgbackrest --config=/etc/pgwarehouse/pgbackrest.conf --stanza=quickstart archive-push %p'\n"
    ));
    assert!(conf["pgbackrest.conf"].contains("repo1-path=/var/lib/pgbackrest\n"), "{}", conf["pgbackrest.conf"]);
    assert!(conf["pgbackrest.conf"].contains("repo1-retention-full=2\n"));
    assert!(conf["pgbackrest.conf"].contains("[quickstart]\npg1-path=/var/lib/postgresql/data/pgdata\n"));
    let sts = statefulset(&stack);
    let spec = sts.spec.as_ref().unwrap();
    let claims: Vec<_> =
        spec.volume_claim_templates.iter().flatten().map(|c| c.metadata.name.clone().unwrap()).collect();
    assert_eq!(claims, ["data"], "the repository's claim is not a template: backups can be turned on later");
    let claim = objects(&stack, &passwords()).backup_claim.unwrap();
    assert_eq!(claim.metadata.name.as_deref(), Some("quickstart-backup"));
    assert!(claim.metadata.owner_references.is_none(), "backups outlive the stack");
    let pod = spec.template.spec.as_ref().unwrap();
    let agent = &pod.containers[1];
    assert_eq!(agent.name, "backup-agent");
    let args = agent.args.clone().unwrap();
    assert_eq!(args[..2], ["agent", "backup"]);
    assert!(args.contains(&"--full=0 3 * * 0".to_string()) && args.contains(&"--differential=0 3 * * 1-6".to_string()));
    let mounts = |c: &k8s_openapi::api::core::v1::Container| {
        c.volume_mounts.iter().flatten().map(|m| m.mount_path.clone()).collect::<Vec<_>>()
    };
    assert!(mounts(agent).contains(&"/var/lib/pgbackrest".to_string()));
    assert!(mounts(&pod.containers[0]).contains(&"/var/run/postgresql".to_string()), "the socket is shared");
    assert!(pod.init_containers.is_none(), "no restore without bootstrap.restore");
}

#[test]
fn a_restored_stack_restores_before_postgres_starts_and_keys_stay_in_the_secret() {
    let stack = restored_to_s3();
    let sts = statefulset(&stack);
    let spec = sts.spec.as_ref().unwrap();
    let claims: Vec<_> =
        spec.volume_claim_templates.iter().flatten().map(|c| c.metadata.name.clone().unwrap()).collect();
    assert_eq!(claims, ["data"]);
    assert!(objects(&stack, &passwords()).backup_claim.is_none(), "an S3 repository needs no volume");
    let pod = spec.template.spec.as_ref().unwrap();
    let restore = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        restore.args.clone().unwrap(),
        [
            "agent",
            "restore",
            "--config=/etc/pgwarehouse/pgbackrest-restore.conf",
            "--stanza=quickstart",
            "--target=2026-11-20T10:00:00+00:00",
            "--setting=max_worker_processes=48"
        ],
        "recovery runs with the stack's worker processes (16 + pg_cron's 32), which replay checks"
    );
    let source = pod.volumes.iter().flatten().find(|v| v.name == "restore-source").unwrap();
    assert_eq!(source.persistent_volume_claim.as_ref().unwrap().claim_name, "quickstart-backup");
    let env_names: Vec<_> = pod.containers[0].env.iter().flatten().map(|e| e.name.clone()).collect();
    assert!(env_names.contains(&"PGBACKREST_REPO1_S3_KEY_SECRET".to_string()));
    let key = pod.containers[0].env.iter().flatten().find(|e| e.name == "PGBACKREST_REPO1_S3_KEY").unwrap();
    assert_eq!(key.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().key, "access-key-id");
    let conf = configmap(&stack).data.unwrap();
    let own = &conf["pgbackrest.conf"];
    for line in [
        "repo1-type=s3",
        "repo1-s3-bucket=wh-backups",
        "repo1-s3-endpoint=minio.infra",
        "repo1-storage-port=9000",
        "repo1-s3-uri-style=path",
        "repo1-storage-verify-tls=n",
        "repo1-path=/pgwarehouse",
    ] {
        assert!(own.contains(&format!("{line}\n")), "{line}: {own}");
    }
    assert!(!own.contains("repo1-s3-key"), "no key in the ConfigMap");
    assert!(conf["pgbackrest-restore.conf"].contains("[quickstart]\n"));
    assert!(!conf["pgbackrest-restore.conf"].contains("retention"), "the source's backups are not ours to expire");
}

fn distributed_example() -> ValidatedStack {
    let mut stack =
        load_manifest(include_str!("../../../stack-templates/examples/distributed-warehouse.yaml")).unwrap();
    stack.metadata.namespace = Some("analytics".into());
    stack.metadata.uid = Some("8d3c1f2e-0000-4000-8000-000000000002".into());
    validate(&stack).unwrap()
}

#[test]
fn workers_match_their_golden_files_and_only_a_distributed_stack_has_them() {
    let workers = objects(&distributed_example(), &passwords()).workers.unwrap();
    golden("worker-configmap", &yaml(&workers.configmap));
    golden("service-workers", &yaml(&workers.service));
    golden("statefulset-worker", &yaml(&workers.statefulset));
    assert!(objects(&quickstart(), &passwords()).workers.is_none());
}

#[test]
fn workers_are_their_own_pods_with_the_stacks_secret_and_hardening() {
    let stack = distributed_example();
    let rendered = objects(&stack, &passwords());
    let workers = rendered.workers.as_ref().unwrap();
    let selector = |s: &StatefulSet| s.spec.as_ref().unwrap().selector.match_labels.clone().unwrap();
    let (coordinator, worker) = (selector(&rendered.statefulset), selector(&workers.statefulset));
    assert!(
        coordinator.iter().any(|(k, v)| worker.get(k).is_some_and(|w| w != v)),
        "neither selector picks the other's pods: {coordinator:?} {worker:?}"
    );
    assert_eq!(workers.service.spec.as_ref().unwrap().selector.as_ref(), Some(&worker));
    assert_eq!(workers.statefulset.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(worker_objects(&stack, 3).unwrap().statefulset.spec.unwrap().replicas, Some(3));
    assert_eq!(worker_host(&stack, 1), "distributed-worker-1.distributed-workers.analytics.svc");
    assert_eq!(coordinator_host(&stack), "distributed-0.distributed-headless.analytics.svc");

    let pod = |s: &StatefulSet| s.spec.as_ref().unwrap().template.spec.clone().unwrap();
    let (coordinator_pod, worker_pod) = (pod(&rendered.statefulset), pod(&workers.statefulset));
    assert_eq!(worker_pod.security_context, coordinator_pod.security_context);
    let (c, w) = (&coordinator_pod.containers[0], &worker_pod.containers[0]);
    assert_eq!((&w.image, &w.security_context, &w.env), (&c.image, &c.security_context, &c.env), "same image, Secret");
    assert_eq!(worker_pod.containers.len(), 1, "no backup agent: backups cover the coordinator");

    // Nodes authenticate with scram passwords: nothing renders trust for TCP connections.
    let yaml = rendered.to_yaml();
    assert!(yaml.contains("--auth-host=scram-sha-256"), "{yaml}");
    assert!(!yaml.contains("auth-host=trust") && !yaml.contains("host all all all trust"), "{yaml}");
    let worker_conf = &workers.configmap.data.as_ref().unwrap()[CONFIG_KEY];
    assert!(worker_conf.contains("shared_preload_libraries = 'citus,pg_cron,pg_stat_statements'\n"), "{worker_conf}");
    assert!(worker_conf.contains("wal_level = 'logical'\n"), "{worker_conf}");
    assert!(!worker_conf.contains("archive_command"), "workers archive no WAL: {worker_conf}");
}

#[test]
fn worker_volumes_and_resources_default_to_the_stacks() {
    let mut stack = distributed_example();
    stack.spec.postgres.storage.size = Some("50Gi".into());
    stack.spec.postgres.storage.storage_class_name = Some("fast".into());
    let claim = |stack: &ValidatedStack| {
        let set = worker_objects(stack, 1).unwrap().statefulset.spec.unwrap();
        let spec = set.volume_claim_templates.unwrap()[0].spec.clone().unwrap();
        (spec.resources.unwrap().requests.unwrap()["storage"].0.clone(), spec.storage_class_name.unwrap())
    };
    assert_eq!(claim(&stack), ("50Gi".to_string(), "fast".to_string()));
    stack.spec.distributed.as_mut().unwrap().storage =
        Some(crate::api::StorageSpec { size: Some("200Gi".into()), ..Default::default() });
    assert_eq!(claim(&stack), ("200Gi".to_string(), "fast".to_string()), "a worker's own size, the stack's class");
}

fn ha_example() -> ValidatedStack {
    let mut stack = load_manifest(include_str!("../../../stack-templates/examples/ha-warehouse.yaml")).unwrap();
    stack.metadata.namespace = Some("analytics".into());
    stack.metadata.uid = Some("8d3c1f2e-0000-4000-8000-000000000003".into());
    validate(&stack).unwrap()
}

#[test]
fn patroni_objects_match_their_golden_files_and_only_a_stack_of_several_instances_has_them() {
    let objects = objects(&ha_example(), &passwords());
    let ha = objects.ha.as_ref().unwrap();
    golden("statefulset-ha", &yaml(&objects.statefulset));
    golden("configmap-ha", &yaml(&objects.configmap));
    golden("service-client-ha", &yaml(&objects.client));
    golden("service-ro", &yaml(&ha.replicas_service));
    golden("role-patroni", &yaml(&ha.role));
    golden("rolebinding-patroni", &yaml(&ha.role_binding));
    golden("pdb", &yaml(&ha.disruption_budget));
    assert!(super::objects(&quickstart(), &passwords()).ha.is_none());
}

#[test]
fn services_follow_patronis_role_label_which_the_pod_template_leaves_to_patroni() {
    let stack = ha_example();
    let objects = objects(&stack, &passwords());
    let selector = |s: &Service| s.spec.as_ref().unwrap().selector.clone().unwrap();
    assert_eq!(selector(&objects.client)["role"], "primary");
    assert_eq!(selector(&objects.ha.as_ref().unwrap().replicas_service)["role"], "replica");
    assert!(!selector(&objects.headless).contains_key("role"), "every member has its DNS name");
    let spec = objects.statefulset.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let template = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert!(!template.contains_key("role"), "a role label in the template would fight Patroni's");
    let secret = objects.secret.string_data.as_ref().unwrap();
    assert_eq!(secret[REPLICATION_PASSWORD_KEY], "golden-replication");
    assert_eq!(secret[REWIND_PASSWORD_KEY], "golden-rewind");
    let plain = super::objects(&quickstart(), &passwords()).secret.string_data.unwrap();
    assert!(!plain.contains_key(REPLICATION_PASSWORD_KEY), "one instance has no replication role");
    let budget = objects.ha.as_ref().unwrap().disruption_budget.spec.clone().unwrap();
    assert_eq!(budget.max_unavailable, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)));
}

#[test]
fn a_parameter_change_does_not_roll_patronis_pods_but_reaches_its_configuration() {
    let stack = ha_example();
    let mut changed = stack.clone();
    changed.spec.postgres.parameters.insert("work_mem".into(), "256MB".into());
    let checksum = |s: &ValidatedStack| config_checksum(s);
    assert_eq!(checksum(&stack), checksum(&changed), "Patroni applies it: no rollout");
    let dynamic = patroni::dynamic_config(&changed);
    assert_eq!(dynamic["postgresql"]["parameters"]["work_mem"], "256MB");
    assert_eq!(dynamic["postgresql"]["parameters"]["wal_log_hints"], "on", "pg_rewind needs it");
    assert_eq!(dynamic["synchronous_mode"], true);
    assert_eq!((dynamic["ttl"].as_u64(), dynamic["loop_wait"].as_u64()), (Some(20), Some(5)));
    assert!(dynamic["postgresql"]["parameters"].get("port").is_none(), "Patroni owns listen and port");
}
