"""The web edges: the partner API, the customer pages and the dashboard (each a package), and
what they share (security headers, sign-in, redirects, error answers, the WSGI server). They parse
input, call the domain, shape the output and own the commit."""
