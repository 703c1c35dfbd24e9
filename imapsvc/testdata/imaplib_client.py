"""Drives an IMAP server with Python's imaplib, as a common client does.

Usage: imaplib_client.py HOST PORT CAFILE USER PASSWORD
Prints one JSON object with what the server answered.
"""
import imaplib
import json
import ssl
import sys
import time

host, port, cafile, user, password = sys.argv[1:6]
out = {}
ctx = ssl.create_default_context(cafile=cafile)
m = imaplib.IMAP4(host, int(port))
out["caps_before_tls"] = sorted(m.capabilities)
m.starttls(ssl_context=ctx)
typ, _ = m.login(user, password)
out["login"] = typ
typ, data = m.capability()
out["caps"] = sorted(data[0].decode().upper().split())
typ, data = m.list()
out["list"] = [d.decode() for d in data]
msg = (b"From: Python <py@remote.test>\r\nTo: alice@example.com\r\nSubject: from imaplib\r\n"
       b"Date: Tue, 03 Jan 2023 10:00:00 +0000\r\n\r\nhello from python\r\n")
typ, data = m.append("INBOX", r"(\Seen)", imaplib.Time2Internaldate(time.time()), msg)
out["append"] = [typ, data[0].decode()]
typ, data = m.select("INBOX")
out["select"] = [typ, data[0].decode()]
typ, data = m.search(None, "SUBJECT", '"from imaplib"')
out["search"] = data[0].decode()
typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
out["fetch"] = [d[0].decode() + "|" + d[1].decode() if isinstance(d, tuple) else d.decode() for d in data]
typ, data = m.store("1", "+FLAGS", r"(\Flagged)")
out["store"] = [typ, data[0].decode()]
typ, data = m.uid("COPY", "1", "Sent")
out["copy"] = [typ, data[0].decode() if data[0] else ""]
typ, data = m.store("1", "+FLAGS", r"(\Deleted)")
typ, data = m.expunge()
out["expunge"] = [typ, [d.decode() for d in data if d]]
typ, data = m.status("Sent", "(MESSAGES UIDNEXT)")
out["status"] = data[0].decode()
m.logout()
print(json.dumps(out))
