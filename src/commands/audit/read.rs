//! Reading the cluster: the API server's and kubelets' versions and the Nodes' facts, the
//! namespaces, and the Jobs, CronJobs, Pods and Pod Events in scope, those as raw JSON. Pods are
//! kept as they are read only when they run to completion or look troubled, and Events only as
//! the few fields that explain a Pod, so memory follows what is reported, not the cluster's size.

use std::sync::Arc;

use anyhow::Context as _;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use podmedic_engine::cluster::NodeFacts;
use podmedic_engine::kubernetes::NodeKubelet;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::events::PodEvents;
use super::explain::looks_troubled;
use super::report::{CapabilityReport, ClusterObjects};
use crate::cluster;

/// Objects per page when listing, so that large clusters are read in bounded pieces.
const PAGE_SIZE: u32 = 500;

/// The API server's version, every kubelet's and every Node's facts; a cluster that does not
/// answer is an error, Nodes that cannot be listed (a user without cluster-wide read) only a note.
pub(super) async fn read_capability(
    client: &Client,
    notes: &mut Vec<String>,
) -> anyhow::Result<(CapabilityReport, Option<Vec<Arc<NodeFacts>>>)> {
    let info = client.apiserver_version().await.context("cannot reach the API server")?;
    let api_server = cluster::api_server_version_text(&info);
    match list_all(&Api::<Node>::all(client.clone()), ListParams::default()).await {
        Ok(nodes) => {
            let kubelets: Vec<NodeKubelet> = nodes.iter().filter_map(cluster::node_kubelet).collect();
            let facts = nodes.iter().filter_map(cluster::node_facts).map(Arc::new).collect();
            Ok((CapabilityReport::decide(api_server, Some(&kubelets)), Some(facts)))
        }
        Err(error) => {
            notes.push(format!(
                "cannot list Nodes ({error}): kubelet versions were not checked, Pending Pods are explained \
                 without them"
            ));
            Ok((CapabilityReport::decide(api_server, None), None))
        }
    }
}

/// The namespaces, Jobs, CronJobs and run-to-completion Pods in scope (`None`: all namespaces).
pub(super) async fn read_objects(
    client: &Client,
    namespace: Option<&str>,
    notes: &mut Vec<String>,
) -> anyhow::Result<ClusterObjects> {
    let where_ = namespace.map_or_else(|| "in all namespaces".to_owned(), |ns| format!("in namespace {ns}"));
    let jobs = list_raw::<Job>(client, namespace, ListParams::default())
        .await
        .with_context(|| format!("cannot list Jobs {where_}"))?;
    let cron_jobs = list_raw::<CronJob>(client, namespace, ListParams::default())
        .await
        .with_context(|| format!("cannot list CronJobs {where_}"))?;
    // Every Pod is read, page by page; long-running ones are kept only when they look troubled.
    let (mut pods, mut troubled_pods) = (Vec::new(), Vec::new());
    each_raw::<Pod>(client, namespace, ListParams::default(), |pod| {
        let run_to_completion =
            matches!(pod.pointer("/spec/restartPolicy").and_then(Value::as_str), Some("Never" | "OnFailure"));
        if run_to_completion {
            pods.push(pod);
        } else if looks_troubled(&pod) {
            troubled_pods.push(pod);
        }
    })
    .await
    .with_context(|| format!("cannot list Pods {where_}"))?;
    let mut events = PodEvents::default();
    let read_events =
        each_raw::<Event>(client, namespace, ListParams::default().fields("involvedObject.kind=Pod"), |event| {
            events.add(&event)
        })
        .await;
    if let Err(error) = read_events {
        notes.push(format!("cannot list Events {where_} ({error:#}): Pods are explained from their status alone"));
    }

    let namespaces_api = Api::<Namespace>::all(client.clone());
    let namespaces = match namespace {
        None => list_all(&namespaces_api, ListParams::default()).await.map_err(|e| e.to_string()),
        Some(ns) => namespaces_api.get_opt(ns).await.map(|n| n.into_iter().collect()).map_err(|e| e.to_string()),
    };
    let namespaces = namespaces.unwrap_or_else(|error| {
        notes.push(format!("cannot read Namespaces ({error}): their labels and podmedic annotations are not known"));
        Vec::new()
    });
    Ok(ClusterObjects { namespaces, jobs, cron_jobs, pods, troubled_pods, events, nodes: None, vpas: Vec::new() })
}

/// Every object of a list, page by page, typed (Nodes and Namespaces, of which only versions,
/// labels and annotations are read).
async fn list_all<K>(api: &Api<K>, params: ListParams) -> Result<Vec<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.limit(PAGE_SIZE);
    let mut items = Vec::new();
    loop {
        let page = api.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

/// Every object of a namespaced kind in scope (`None`: all namespaces), page by page, as raw JSON
/// with its `apiVersion` and `kind`. `K` only names the kind and its URL: the objects are never
/// decoded into `K`, so fields this build's Kubernetes types do not know reach the engine intact.
async fn list_raw<K>(client: &Client, namespace: Option<&str>, params: ListParams) -> anyhow::Result<Vec<Value>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    let mut items = Vec::new();
    each_raw::<K>(client, namespace, params, |item| items.push(item)).await?;
    Ok(items)
}

/// Hands every object of a namespaced kind in scope to `each`, page by page, as raw JSON with its
/// `apiVersion` and `kind`: a page is dropped before the next is read.
async fn each_raw<K>(
    client: &Client,
    namespace: Option<&str>,
    params: ListParams,
    each: impl FnMut(Value),
) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    let url = K::url_path(&(), namespace);
    each_raw_at(client, &url, &K::api_version(&()), &K::kind(&()), params, each).await
}

/// Every object of the list at `url`, page by page, as raw JSON with its `apiVersion` and `kind`.
async fn list_raw_at(
    client: &Client,
    url: &str,
    api_version: &str,
    kind: &str,
    params: ListParams,
) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    each_raw_at(client, url, api_version, kind, params, |item| items.push(item)).await?;
    Ok(items)
}

/// Hands every object of the list at `url` to `each`, page by page, as raw JSON with its
/// `apiVersion` and `kind`: a page is dropped before the next is read.
async fn each_raw_at(
    client: &Client,
    url: &str,
    api_version: &str,
    kind: &str,
    params: ListParams,
    mut each: impl FnMut(Value),
) -> anyhow::Result<()> {
    let request = kube::core::Request::new(url);
    let mut params = params.limit(PAGE_SIZE);
    loop {
        let text = client.request_text(request.list(&params)?).await?;
        let page = Page::parse(&text, api_version, kind)?;
        page.items.into_iter().for_each(&mut each);
        match page.continue_token {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// The VerticalPodAutoscalers in scope (`None`: all namespaces). A cluster without the VPA's
/// CustomResourceDefinition has none; a user who may not list them gets a note.
pub(super) async fn read_vpas(client: &Client, namespace: Option<&str>, notes: &mut Vec<String>) -> Vec<Value> {
    let url = match namespace {
        Some(ns) => format!("/apis/autoscaling.k8s.io/v1/namespaces/{ns}/verticalpodautoscalers"),
        None => "/apis/autoscaling.k8s.io/v1/verticalpodautoscalers".to_owned(),
    };
    match list_raw_at(client, &url, "autoscaling.k8s.io/v1", "VerticalPodAutoscaler", ListParams::default()).await {
        Ok(vpas) => vpas,
        Err(error) if matches!(error.downcast_ref(), Some(kube::Error::Api(status)) if status.is_not_found()) => {
            Vec::new()
        }
        Err(error) => {
            notes.push(format!("cannot list VerticalPodAutoscalers ({error}): sidecars they size are not flagged"));
            Vec::new()
        }
    }
}

/// One page of a list response.
#[derive(Debug, PartialEq)]
struct Page {
    /// The objects, each with `apiVersion` and `kind` (the items of a list carry neither).
    items: Vec<Value>,
    /// Where the next page starts, if there is one.
    continue_token: Option<String>,
}

impl Page {
    fn parse(text: &str, api_version: &str, kind: &str) -> serde_json::Result<Page> {
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            items: Option<Vec<Map<String, Value>>>,
            #[serde(default)]
            metadata: Option<ListMeta>,
        }
        #[derive(Deserialize)]
        struct ListMeta {
            #[serde(default, rename = "continue")]
            continue_token: Option<String>,
        }
        let list: List = serde_json::from_str(text)?;
        let items = list
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|mut object| {
                object.entry("apiVersion").or_insert_with(|| api_version.into());
                object.entry("kind").or_insert_with(|| kind.into());
                Value::Object(object)
            })
            .collect();
        let continue_token = list.metadata.and_then(|m| m.continue_token).filter(|c| !c.is_empty());
        Ok(Page { items, continue_token })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_page_keeps_every_field_and_gains_the_kind() {
        let text = json!({
            "apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": "42", "continue": "next-page"},
            "items": [{
                "metadata": {"name": "p", "namespace": "batch", "futureMetadata": {"x": 1}},
                "spec": {"restartPolicy": "Never", "aFieldNoTypeKnows": [1, 2], "containers": [
                    {"name": "proxy", "image": "envoyproxy/envoy:v1.33",
                     "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}],
                     "someFutureField": {"nested": true}}
                ]}
            }]
        })
        .to_string();
        let page = Page::parse(&text, "v1", "Pod").unwrap();
        assert_eq!(page.continue_token.as_deref(), Some("next-page"));
        let pod = &page.items[0];
        assert_eq!((pod["apiVersion"].as_str(), pod["kind"].as_str()), (Some("v1"), Some("Pod")));
        let sent: Value = serde_json::from_str(&text).unwrap();
        let mut expected = sent["items"][0].clone();
        expected["apiVersion"] = json!("v1");
        expected["kind"] = json!("Pod");
        assert_eq!(*pod, expected, "the object is what the API server sent, plus its apiVersion and kind");
    }

    #[test]
    fn the_last_page_has_no_continue_token() {
        let page = Page::parse(r#"{"metadata": {"continue": ""}, "items": []}"#, "batch/v1", "Job").unwrap();
        assert_eq!(page, Page { items: vec![], continue_token: None });
        let page = Page::parse(r#"{"items": null}"#, "batch/v1", "Job").unwrap();
        assert_eq!(page, Page { items: vec![], continue_token: None });
    }
}
