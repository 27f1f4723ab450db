//! RabbitMQ's list parameters: `sort`, `sort_reverse`, `name` with
//! `use_regex`, `page` and `page_size` (the paged reply), and `columns`.
use serde_json::{json, Value};
use std::cmp::Ordering;

use super::request::{ApiError, ApiRequest, ApiResponse, ApiResult};

/// RabbitMQ refuses larger pages.
const MAX_PAGE_SIZE: u64 = 500;
const DEFAULT_PAGE_SIZE: u64 = 100;

/// Answers `items` (objects) with the request's list parameters applied.
/// `default_sort` is the key RabbitMQ sorts that list by when none is
/// asked for (`None`: the order given).
pub fn reply(req: &ApiRequest, mut items: Vec<Value>, default_sort: &[&str]) -> ApiResult {
    let reverse = req.query_flag("sort_reverse");
    match req.query("sort").filter(|s| !s.is_empty()) {
        Some(key) => {
            let path: Vec<&str> = key.split('.').collect();
            items.sort_by(|a, b| compare(lookup(a, &path), lookup(b, &path)));
        }
        None if !default_sort.is_empty() => items.sort_by(|a, b| {
            default_sort
                .iter()
                .map(|k| compare(a.get(*k), b.get(*k)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        }),
        None => {}
    }
    if reverse {
        items.reverse();
    }
    let Some(page) = req.query("page") else {
        let cols = columns(req);
        return Ok(ApiResponse::ok(Value::Array(
            items.into_iter().map(|i| project(i, &cols)).collect(),
        )));
    };
    let invalid = || ApiError::BadRequest("Pagination parameters are invalid".into());
    let page: u64 = page.parse().map_err(|_| invalid())?;
    let page_size: u64 = match req.query("page_size") {
        None => DEFAULT_PAGE_SIZE,
        Some(s) => s.parse().map_err(|_| invalid())?,
    };
    if page == 0 || page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(ApiError::BadRequestNamed(
            "invalid_pagination_parameters",
            format!("Invalid pagination parameters: page number {page}, page size {page_size}"),
        ));
    }
    let total = items.len() as u64;
    let filtered = filter_by_name(req, items)?;
    let filtered_count = filtered.len() as u64;
    let page_count = filtered_count.div_ceil(page_size).max(1);
    if page > page_count {
        return Err(ApiError::BadRequestNamed(
            "page_out_of_range",
            format!(
                "Page out of range, page: {page} page size: {page_size}, len: {filtered_count}"
            ),
        ));
    }
    let cols = columns(req);
    let start = ((page - 1) * page_size) as usize;
    let chunk: Vec<Value> = filtered
        .into_iter()
        .skip(start)
        .take(page_size as usize)
        .map(|i| project(i, &cols))
        .collect();
    Ok(ApiResponse::ok(json!({
        "filtered_count": filtered_count,
        "item_count": chunk.len(),
        "items": chunk,
        "page": page,
        "page_count": page_count,
        "page_size": page_size,
        "total_count": total,
    })))
}

/// `name` as a substring, or with `use_regex=true` as a regular
/// expression, matched against each item's name.
fn filter_by_name(req: &ApiRequest, items: Vec<Value>) -> Result<Vec<Value>, ApiError> {
    let Some(pattern) = req.query("name").filter(|n| !n.is_empty()) else {
        return Ok(items);
    };
    let name = |i: &Value| {
        i.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if req.query_flag("use_regex") {
        let re = regex::Regex::new(pattern)
            .map_err(|e| ApiError::BadRequest(format!("invalid regular expression: {e}")))?;
        Ok(items
            .into_iter()
            .filter(|i| re.is_match(&name(i)))
            .collect())
    } else {
        let lower = pattern.to_lowercase();
        Ok(items
            .into_iter()
            .filter(|i| name(i).to_lowercase().contains(&lower))
            .collect())
    }
}

/// A single object with the request's `columns` applied.
pub fn project_columns(req: &ApiRequest, item: Value) -> Value {
    project(item, &columns(req))
}

/// `columns=a,b.c`: the paths to keep (empty: everything).
fn columns(req: &ApiRequest) -> Vec<Vec<String>> {
    req.query("columns")
        .map(|c| {
            c.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.split('.').map(str::to_string).collect())
                .collect()
        })
        .unwrap_or_default()
}

/// Keeps only `cols` of `item`; as RabbitMQ, a nested column `a.b` keeps
/// all of `a`.
fn project(item: Value, cols: &[Vec<String>]) -> Value {
    if cols.is_empty() {
        return item;
    }
    let mut out = serde_json::Map::new();
    for path in cols {
        if let Some(v) = path.first().and_then(|k| item.get(k)) {
            out.insert(path[0].clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn lookup<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

/// Missing first, then numbers by value, strings, others by their text.
fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Less,
        (_, None) => Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::Method;
    use super::*;

    fn req(query: &str) -> ApiRequest {
        ApiRequest {
            method: Method::Get,
            segments: vec![],
            query: query
                .split('&')
                .filter(|s| !s.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k.to_string(), v.to_string())
                })
                .collect(),
            authorization: None,
            reason: None,
            body: bytes::Bytes::new(),
            peer: None,
        }
    }

    fn items() -> Vec<Value> {
        vec![
            json!({"name": "b", "messages": 5, "stats": {"rate": 1.5}}),
            json!({"name": "a", "messages": 10, "stats": {"rate": 0.5}}),
            json!({"name": "c-b", "messages": 1}),
        ]
    }

    fn names(v: &Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn sorts_by_default_key_asked_key_and_reversed() {
        let r = reply(&req(""), items(), &["name"]).unwrap();
        assert_eq!(names(r.body.as_ref().unwrap()), ["a", "b", "c-b"]);
        let r = reply(&req("sort=messages&sort_reverse=true"), items(), &["name"]).unwrap();
        assert_eq!(names(r.body.as_ref().unwrap()), ["a", "b", "c-b"]);
        let r = reply(&req("sort=stats.rate"), items(), &["name"]).unwrap();
        assert_eq!(
            names(r.body.as_ref().unwrap()),
            ["c-b", "a", "b"],
            "missing first"
        );
    }

    #[test]
    fn pages_filter_and_columns() {
        let r = reply(&req("page=1&page_size=2&name=b"), items(), &["name"]).unwrap();
        let b = r.body.unwrap();
        assert_eq!(b["total_count"], 3);
        assert_eq!(b["filtered_count"], 2);
        assert_eq!(b["page_count"], 1);
        assert_eq!(b["item_count"], 2);
        assert_eq!(names(&b["items"]), ["b", "c-b"]);
        let r = reply(&req("page=2&page_size=2"), items(), &["name"]).unwrap();
        assert_eq!(names(&r.body.unwrap()["items"]), ["c-b"]);
        assert!(reply(&req("page=3&page_size=2"), items(), &["name"]).is_err());
        assert!(reply(&req("page=1&page_size=501"), items(), &["name"]).is_err());
        let r = reply(&req("page=1&name=%5Ec&use_regex=true"), items(), &[]);
        assert!(r.is_ok());
        let r = reply(&req("page=1&name=^c&use_regex=true"), items(), &[]).unwrap();
        assert_eq!(names(&r.body.unwrap()["items"]), ["c-b"]);
        let r = reply(&req("columns=name,stats.rate"), items(), &["name"]).unwrap();
        assert_eq!(
            r.body.unwrap()[0],
            json!({"name": "a", "stats": {"rate": 0.5}}),
            "a nested column keeps its whole parent"
        );
    }
}
