#!/usr/bin/env python3
"""Regenerates gateway.ini from the key table in src/config/keys.rs (run after adding a key;
a unit test fails while the two disagree)."""
import pathlib, re
root = pathlib.Path(__file__).resolve().parent.parent
src = (root / "src/config/keys.rs").read_text()
keys = re.findall(r'\["(\w+)"\] "(\w+)" = "((?:[^"\\]|\\.)*)", (true|false), "((?:[^"\\]|\\.)*)";', src)
out = ["; lingma-gateway configuration.",
       "; Every key is shown commented out with its default. Uncomment to change it.",
       "; Any key can also be set with an environment variable LINGMA_GATEWAY_<KEY in upper case>",
       "; (e.g. LINGMA_GATEWAY_PORT=9000); command-line flags override both (see --help).",
       "; Check a configuration with: lingma-gateway check-config --config gateway.ini",
       ""]
section = None
for sec, key, default, _secret, help_ in keys:
    if sec != section:
        if section:
            out.append("")
        out.append(f"[{sec}]")
        section = sec
    out.append("; " + help_.replace('\\"', '"'))
    out.append(f";{key} = {default}".rstrip())
out += ["",
        "; Accounts: one [account.NAME] section each (NAME: lowercase letters, digits, _). An",
        "; account owns `instances` Lingma instances (in name order; instance_count then follows).",
        "; Auto-login needs username + password; a session bundle (from POST",
        "; /internal/session/export) is unpacked into the instances' workDirs at startup instead.",
        "; Environment: LINGMA_GATEWAY_ACCOUNT_<NAME>_<KEY>, e.g. LINGMA_GATEWAY_ACCOUNT_WORK_PASSWORD.",
        ";[account.work]",
        ";username = you@example.com",
        ";password = (secret: prefer the environment variable)",
        ";session_bundle =",
        ";session_bundle_file =",
        ";instances = 1"]
(root / "gateway.ini").write_text("\n".join(out) + "\n")
