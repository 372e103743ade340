"""HTTP helpers and operations: error pages, security headers, the session cookie and
the memberships it holds, client addresses, QR codes, event logs, refusals and metrics.
"""
