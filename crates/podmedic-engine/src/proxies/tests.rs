//! Reading the proxies' command lines and environment: the ports they bind.

use serde::Deserialize;

use super::exit_code::release_of;
use super::*;

fn bound(kind: Option<ProxyKind>, yaml: &str) -> (Option<u16>, Vec<u16>) {
    let value: Value = yaml_serde::from_str(yaml).unwrap();
    let BoundPorts { health, mut others } = bound_ports(&Container::deserialize(&value).unwrap(), kind);
    others.sort_unstable();
    others.dedup();
    (health, others)
}

const V2: Option<ProxyKind> = Some(ProxyKind::CloudSqlV2);

#[test]
fn a_variable_name_is_recognised_without_being_built() {
    for kind in [ProxyKind::CloudSqlV2, ProxyKind::AlloyDb] {
        for flag in ["http-port", "health-check", "config-file", "quitquitquit", "port"] {
            assert!(is_env_name(&env_name(kind, flag), kind, flag), "{flag}");
        }
    }
    let v2 = ProxyKind::CloudSqlV2;
    assert!(!is_env_name("CSQL_PROXY_HTTP_PORTS", v2, "http-port"), "longer");
    assert!(!is_env_name("CSQL_PROXY_HTTP_POR", v2, "http-port"), "shorter");
    assert!(!is_env_name("CSQL_PROXY_HTTP-PORT", v2, "http-port"), "variables use _");
    assert!(!is_env_name("csql_proxy_http_port", v2, "http-port"), "the prefix is upper case");
    assert!(!is_env_name("ALLOYDB_PROXY_HTTP_PORT", v2, "http-port"), "another proxy's prefix");
}

#[test]
fn a_plain_cloud_sql_proxy_listens_on_each_engines_default_port() {
    // One instance, no --port: MySQL 3306, PostgreSQL 5432 or SQL Server 1433, podmedic cannot tell.
    assert_eq!(bound(V2, "{name: p, args: ['acme:eu:db']}"), (None, vec![1433, 3306, 5432]));
    // Two instances count up from each default.
    assert_eq!(bound(V2, "{name: p, args: ['a:b:c', 'a:b:d']}"), (None, vec![1433, 1434, 3306, 3307, 5432, 5433]));
}

#[test]
fn port_counts_up_per_instance_without_its_own_query_port() {
    let (_, others) = bound(V2, "{name: p, args: ['--port=6000', 'a:b:c', 'a:b:d?port=7000', 'a:b:e', 'x.com:a:b:f']}");
    assert_eq!(others, [6000, 6001, 6002, 7000]);
    let (_, others) = bound(V2, "{name: p, args: ['-p', '6000', 'a:b:c']}");
    assert_eq!(others, [6000]);
    let alloydb = bound(
        Some(ProxyKind::AlloyDb),
        "{name: p, args: ['projects/p/locations/l/clusters/c/instances/i', 'projects/p/locations/l/clusters/c/instances/j']}",
    );
    assert_eq!(alloydb, (None, vec![5432, 5433]), "AlloyDB's --port defaults to 5432");
}

#[test]
fn instances_and_ports_from_the_environment() {
    let (_, others) = bound(
        V2,
        "{name: p, env: [{name: CSQL_PROXY_INSTANCE_CONNECTION_NAME_0, value: 'a:b:c?port=10001'}, \
         {name: CSQL_PROXY_INSTANCE_CONNECTION_NAME_1, value: 'a:b:d?port=10002'}, {name: CSQL_PROXY_ADMIN_PORT, value: '9300'}]}",
    );
    assert_eq!(others, [9300, 10001, 10002]);
}

#[test]
fn the_health_and_admin_servers_open_on_their_defaults_when_switched_on() {
    assert_eq!(bound(V2, "{name: p, args: ['--health-check', 'a:b:c?port=5432']}"), (Some(9090), vec![5432]));
    assert_eq!(bound(V2, "{name: p, args: ['--prometheus', '--http-port=9300', 'a:b:c?port=5432']}").0, Some(9300));
    assert_eq!(bound(V2, "{name: p, args: ['--health-check=false', 'a:b:c?port=5432']}"), (None, vec![5432]));
    // --quitquitquit and --debug open the admin server on 9091 unless --admin-port moves it.
    assert_eq!(bound(V2, "{name: p, args: ['--quitquitquit', 'a:b:c?port=5432']}").1, [5432, 9091]);
    assert_eq!(bound(V2, "{name: p, args: ['--debug', '--admin-port=9301', 'a:b:c?port=5432']}").1, [5432, 9301]);
    assert_eq!(
        bound(V2, "{name: p, env: [{name: CSQL_PROXY_QUITQUITQUIT, value: 'true'}], args: ['a:b:c?port=1']}").1,
        [1, 9091]
    );
    // --debug-logs opens nothing.
    assert_eq!(bound(V2, "{name: p, args: ['--debug-logs', 'a:b:c?port=5432']}").1, [5432]);
}

#[test]
fn settings_podmedic_cannot_read_count_as_the_defaults() {
    let (health, others) = bound(V2, "{name: p, envFrom: [{configMapRef: {name: proxy}}], args: ['a:b:c?port=5432']}");
    assert_eq!((health, others), (Some(9090), vec![5432, 9091]));
    let (health, _) = bound(V2, "{name: p, args: ['--config-file=/etc/proxy.toml']}");
    assert_eq!(health, Some(9090));
}

#[test]
fn port_zero_is_never_a_port() {
    assert_eq!(
        bound(V2, "{name: p, args: ['--health-check', '--http-port=0', '--admin-port=0', 'a:b:c?port=0']}").0,
        None
    );
    assert_eq!(bound(None, "{name: app, args: ['--port=0', '--http-port', '0']}"), (None, vec![]));
}

#[test]
fn any_container_keeps_the_ports_its_flags_name() {
    let (_, others) =
        bound(None, "{name: app, args: ['--port=8080', '--admin-port', '9091', '-health_check_port=8090']}");
    assert_eq!(others, [8080, 8090, 9091]);
}

#[test]
fn cloud_sql_v1_listens_where_its_instances_say() {
    let v1 = Some(ProxyKind::CloudSqlV1);
    let (health, others) = bound(
        v1,
        "{name: p, command: [/cloud_sql_proxy, '-instances=a:b:c=tcp:5432,a:b:d=tcp:0.0.0.0:3306', -use_http_health_check]}",
    );
    assert_eq!((health, others), (Some(8090), vec![3306, 5432]));
    assert_eq!(bound(v1, "{name: p, command: [/cloud_sql_proxy, -health_check_port=8100]}").0, Some(8100));
}

#[test]
fn only_release_tags_name_a_version() {
    assert_eq!(release_of("2.14.1"), Some((2, 14, 1)));
    assert_eq!(release_of("2.14.1-alpine"), Some((2, 14, 1)));
    assert_eq!(release_of("1.11.2-bullseye"), Some((1, 11, 2)));
    assert_eq!(release_of("2.6"), Some((2, 6, 0)), "a floating minor tag is at least its .0");
    for unknown in ["latest", "2", "1-alpine", "2.0.0-preview.3", "2.0.0.preview.3", "v2.14.1", "+2.6.0", "2..1", ""] {
        assert_eq!(release_of(unknown), None, "{unknown}");
    }
}
