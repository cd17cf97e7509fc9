"""Parses what /metrics answered with the Prometheus project's own text-format parser
(prometheus_client), for Warrant's end-to-end tests.

    python metrics.py < scraped.txt

Prints one JSON line: every sample, as {"name", "labels", "value"}, and every family's
type by name. A text the parser refuses makes it fail (exit 1, the reason on stderr).
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    samples = []
    types = {}
    for family in text_string_to_metric_families(sys.stdin.read()):
        types[family.name] = family.type
        for sample in family.samples:
            samples.append({"name": sample.name, "labels": sample.labels, "value": sample.value})
    print(json.dumps({"types": types, "samples": samples}))


if __name__ == "__main__":
    main()
