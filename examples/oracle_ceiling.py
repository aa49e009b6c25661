"""Generate a synthetic IEMOCAP-like set with stronger inertia and compare the two oracles.

    python examples/oracle_ceiling.py

Shows the library calls behind ``nasmerc data iemocap6 --set inertia=0.8 --oracle``.
"""

from __future__ import annotations

from nasmerc.registry import create_dataset


def main() -> None:
    dataset = create_dataset("iemocap6", {"inertia": 0.8, "contagion": 0.1})
    result = dataset.oracle.evaluate(dataset.split("test"), rates=[0.0, 0.3, 0.7], seed=0)
    for rate in (0.0, 0.3, 0.7):
        full, alone = result["full"][rate]["waf"], result["context_free"][rate]["waf"]
        print(f"rho {rate:.1f}: oracle WAF {full:.4f}, context-free {alone:.4f}, context adds {full - alone:+.4f}")


if __name__ == "__main__":
    main()
