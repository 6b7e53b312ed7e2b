#!/usr/bin/python3
"""Parse Prometheus text (stdin) with the reference client library's parser
and print the families as JSON: {name: {"type": t, "samples": [[name,
labels, value], ...]}}, named as the library names families: a counter
without its "_total" (parley_store_stored), its samples with it
(parley_store_stored_total). A text the parser refuses exits non-zero."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = {
        "type": family.type,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
print(json.dumps(families))
