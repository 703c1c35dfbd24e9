"""Drives a POP3 server with Python's poplib, as a common client does.

Usage: poplib_client.py HOST PORT CAFILE USER PASSWORD
Prints one JSON object with what the server answered.
"""
import json
import poplib
import ssl
import sys

host, port, cafile, user, password = sys.argv[1:6]
out = {}
ctx = ssl.create_default_context(cafile=cafile)
p = poplib.POP3(host, int(port), timeout=30)
out["capa_before_tls"] = sorted(p.capa())
try:
    p.user(user)
    out["user_before_tls"] = "accepted"
except poplib.error_proto as e:
    out["user_before_tls"] = e.args[0].decode()
p.stls(context=ctx)
out["capa"] = sorted(p.capa())
out["user"] = p.user(user).decode()
out["pass"] = p.pass_(password).decode()
out["stat"] = list(p.stat())
resp, lines, _ = p.list()
out["list"] = [l.decode() for l in lines]
resp, lines, _ = p.uidl()
out["uidl"] = [l.decode() for l in lines]
resp, lines, octets = p.retr(1)
# poplib undoes the dot-stuffing; octets counts the lines as sent.
out["retr"] = [l.decode() for l in lines]
resp, lines, _ = p.top(1, 0)
out["top"] = [l.decode() for l in lines]
out["dele"] = p.dele(1).decode()
out["noop"] = p.noop().decode()
out["quit"] = p.quit().decode()
print(json.dumps(out))
