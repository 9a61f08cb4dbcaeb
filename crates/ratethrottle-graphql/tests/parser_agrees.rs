//! The parser accepts and refuses what async-graphql's (pest) parser does, on a corpus of
//! valid and broken documents, and on generated ones.

use proptest::prelude::*;
use ratethrottle_graphql::Document;

const VALID: &[&str] = &[
    "{ a }",
    "{ a, b, c }",
    "query { a }",
    "query Q($a: Int = 3, $b: [String!]! = [\"x\"], $c: In = {x: 1, y: [1, 2.5e3]}) @d { a(x: $a) }",
    "mutation M { create(input: {name: \"n\", tags: [A, B], nested: {deep: [[1]]}}) { id } }",
    "subscription S { onEvent(filter: null, flag: true) { id } }",
    "{ alias: field(arg: -12) @include(if: $x) @skip(if: false) { sub } }",
    "{ ... on User { name } ... @include(if: true) { id } ...Frag }",
    "{ ...Frag } fragment Frag on Query @d(x: 1) { a }",
    "query A { a } query B { b }",
    "{ a(s: \"\"\"block \\\"\"\" string\"\"\") }",
    "# a comment\n{ a # another\n b }",
    "\u{feff}{ a }",
    "{ a(x: \"esc\\\"aped\\u00e9\") }",
    "query ($v: Int) { a(first: $v) }",
];

const BROKEN: &[&str] = &[
    "",
    "{",
    "{ }",
    "{ a(",
    "{ a() }",
    "{ a(x:) }",
    "{ a(x: 1 }",
    "query Q(",
    "query Q($a Int) { a }",
    "fragment F { a }",
    "fragment on on T { a }",
    "{ ..Frag }",
    "{ a } { b }",
    "{ a } query B { b }",
    "{ a(x: \"unterminated) }",
    "{ a(x: 1.) }",
    "{ a(x: 12abc) }",
    "{ a(x: $) }",
    "query Q($a: Int = $b) { a }",
    "{ a % }",
    "{ ...F } fragment F on T { a } fragment F on T { b }",
];

fn theirs(text: &str) -> bool {
    async_graphql_parser::parse_query(text).is_ok()
}

fn ours(text: &str) -> bool {
    Document::parse(text).is_ok()
}

#[test]
fn a_corpus_of_valid_and_broken_documents() {
    for text in VALID {
        assert!(theirs(text), "the reference refuses {text:?}");
        assert!(ours(text), "{text:?}: {:?}", Document::parse(text).err());
    }
    for text in BROKEN {
        assert!(!theirs(text), "the reference accepts {text:?}");
        assert!(!ours(text), "{text:?} accepted");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Random arrangements of GraphQL's tokens: whatever the reference accepts, we accept
    /// (pricing never refuses a query the server would run).
    #[test]
    fn what_the_reference_accepts_we_accept(
        parts in proptest::collection::vec(prop_oneof![
            Just("{"), Just("}"), Just("a"), Just("b"), Just("("), Just(")"), Just("x:"),
            Just("1"), Just("$v"), Just("..."), Just("on"), Just("T"), Just("F"),
            Just("fragment"), Just("query"), Just("@d"), Just("[1]"), Just("\"s\""),
        ], 1..24)
    ) {
        let text = parts.join(" ");
        if theirs(&text) {
            prop_assert!(ours(&text), "{:?}: {:?}", text, Document::parse(&text).err());
        }
    }
}
