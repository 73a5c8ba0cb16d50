//! `AccessRules::decide` on the hot path: with no rules (and CORS preflights off) it must not
//! allocate, and with prefix rules a plain path is matched without allocating either. A
//! counting global allocator, per thread, makes that observable.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use http::{HeaderMap, Method};
use samlgate::rules::{AccessRules, AccessSection, Decision, Requirement, RuleSection};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// A global allocator is `unsafe` by definition; this one only counts and delegates to System.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (out, ALLOCATIONS.with(Cell::get) - before)
}

#[test]
fn no_rules_decides_without_allocating() {
    let rules = AccessRules::compile(&AccessSection::default()).unwrap();
    let headers = HeaderMap::new();
    for path in ["/", "/static/../admin", "/a%2fb?x=1", "/%252e"] {
        let (decision, allocations) =
            allocations_during(|| rules.decide(&Method::GET, path, &headers, true));
        assert_eq!(
            decision,
            Decision::Authenticate {
                rule: None,
                requirement: Requirement::Global
            }
        );
        assert_eq!(allocations, 0, "{path}");
    }
}

#[test]
fn prefix_rules_on_plain_paths_do_not_allocate() {
    let rule = |action: &str, prefix: &str| RuleSection {
        action: action.into(),
        path_prefix: Some(prefix.into()),
        ..RuleSection::default()
    };
    let rules = AccessRules::compile(&AccessSection {
        allow_cors_preflight: false,
        rules: vec![rule("deny", "/admin/"), rule("allow", "/static/")],
    })
    .unwrap();
    let headers = HeaderMap::new();
    let (decision, allocations) =
        allocations_during(|| rules.decide(&Method::GET, "/static/app.js?v=3", &headers, true));
    assert_eq!(decision, Decision::Anonymous { rule: "rule 2" });
    assert_eq!(allocations, 0);
    // The counter does see allocations: a path that needs decoding allocates.
    let (_, allocations) =
        allocations_during(|| rules.decide(&Method::GET, "/static/%2e%2e/admin", &headers, true));
    assert!(allocations > 0);
}
