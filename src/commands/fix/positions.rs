//! Where each object and container sits in a manifest file: the 1-based lines a SARIF result
//! points at. Read with serde-saphyr's `Spanned`, which keeps line numbers from the start of the
//! file across `---` documents; only the spine that leads to containers is read, every other
//! field is skipped. The rewrite path (`podmedic fix` output) keeps yaml_serde.

use serde::Deserialize;
use serde_saphyr::Spanned;

/// The positions in one file, one entry per non-empty document (as `fix` reads them).
#[derive(Debug, Default)]
pub struct FilePositions {
    documents: Vec<Document>,
}

/// The spine of one document: an object, or a `List` of objects.
#[derive(Debug, Default, Deserialize)]
struct Document {
    #[serde(default)]
    kind: Option<Spanned<String>>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    spec: Option<Spec>,
    #[serde(default)]
    items: Option<Vec<Document>>,
}

#[derive(Debug, Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: Option<Spanned<String>>,
}

/// A Pod spec, or a spec holding a pod template (`template`, `jobTemplate.spec.template`).
#[derive(Debug, Default, Deserialize)]
struct Spec {
    #[serde(default)]
    containers: Option<Vec<Container>>,
    #[serde(default, rename = "initContainers")]
    init_containers: Option<Vec<Container>>,
    #[serde(default)]
    template: Option<Box<Template>>,
    #[serde(default, rename = "jobTemplate")]
    job_template: Option<Box<Template>>,
}

#[derive(Debug, Default, Deserialize)]
struct Template {
    #[serde(default)]
    spec: Option<Spec>,
}

#[derive(Debug, Default, Deserialize)]
struct Container {
    #[serde(default)]
    name: Option<Spanned<String>>,
}

impl FilePositions {
    /// Reads the positions of a file's text; a text this reader cannot follow (it is only needed
    /// for line numbers) gives no positions, and results point at line 1.
    pub fn read(text: &str) -> FilePositions {
        let documents = serde_saphyr::from_str_multiple::<Document, Vec<_>>(text).unwrap_or_default();
        FilePositions { documents }
    }

    /// The line of an object: its `metadata.name`, else its `kind`. `index` counts the file's
    /// non-empty documents from 0, `item` the entries of a `List`.
    pub fn object_line(&self, index: usize, item: Option<usize>) -> Option<u64> {
        let doc = self.document(index, item)?;
        let name = doc.metadata.as_ref().and_then(|m| m.name.as_ref());
        name.or(doc.kind.as_ref()).map(|s| s.referenced.line())
    }

    /// The line of the container's `name`, in `containers` or `initContainers`.
    pub fn container_line(&self, index: usize, item: Option<usize>, container: &str) -> Option<u64> {
        let mut spec = self.document(index, item)?.spec.as_ref()?;
        // Pod → spec; Deployment, Job... → spec.template.spec; CronJob → spec.jobTemplate.spec.template.spec.
        loop {
            let next = spec.template.as_ref().or(spec.job_template.as_ref()).and_then(|t| t.spec.as_ref());
            if spec.containers.is_some() || spec.init_containers.is_some() {
                break;
            }
            spec = next?;
        }
        let lists = [spec.containers.as_deref(), spec.init_containers.as_deref()];
        lists
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|c| c.name.as_ref())
            .find(|n| n.value == container)
            .map(|n| n.referenced.line())
    }

    fn document(&self, index: usize, item: Option<usize>) -> Option<&Document> {
        let doc = self.documents.get(index)?;
        match item {
            Some(i) => doc.items.as_ref()?.get(i),
            None => Some(doc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: web
        image: nginx
      - image: envoy
        name: proxy
---
---
kind: ConfigMap
metadata: {name: settings}
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  jobTemplate:
    spec:
      template:
        spec:
          initContainers:
          - name: wait
          containers:
          - name: job
";

    #[test]
    fn lines_count_from_the_start_of_the_file_across_documents() {
        let positions = FilePositions::read(STREAM);
        assert_eq!(positions.object_line(0, None), Some(4));
        assert_eq!(positions.container_line(0, None, "web"), Some(9));
        assert_eq!(positions.container_line(0, None, "proxy"), Some(12));
        // The empty document between `---` lines is not counted, as `fix` does not count it.
        assert_eq!(positions.object_line(1, None), Some(16));
        assert_eq!(positions.container_line(1, None, "web"), None);
        assert_eq!(positions.container_line(2, None, "wait"), Some(28));
        assert_eq!(positions.container_line(2, None, "job"), Some(30));
        assert_eq!(positions.container_line(2, None, "absent"), None);
    }

    #[test]
    fn list_items_and_json_have_lines_and_unreadable_text_has_none() {
        let list = "{\"kind\": \"List\", \"items\": [\n {\"kind\": \"Pod\", \"metadata\": {\"name\": \"a\"},\n  \"spec\": {\"containers\": [\n   {\"name\": \"main\"}]}}]}\n";
        let positions = FilePositions::read(list);
        assert_eq!(positions.object_line(0, Some(0)), Some(2));
        assert_eq!(positions.container_line(0, Some(0), "main"), Some(4));
        assert_eq!(FilePositions::read("kind: [unclosed\n").object_line(0, None), None);
    }
}
