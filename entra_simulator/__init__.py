"""A Microsoft Graph + Entra token endpoint look-alike over HTTPS on loopback.

For the demo, the tests and the benchmarks; it ships beside the exporter but is never imported
by it except lazily for ``--demo``. It serves:

- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (OpenID discovery, as MSAL asks it);
- ``POST /{tenant}/oauth2/v2.0/token`` (client credentials with a secret, a certificate-signed
  client assertion, or a federated token; ``expires_in`` settable);
- ``GET /beta/reports/getCredentialUserRegistrationCount()`` (bearer token checked), with
  plausible counts that drift slowly, in each of the shapes Microsoft's documentation shows;
- ``GET /v1.0/reports/authenticationMethods/userRegistrationDetails`` (paged, generated users);
- ``GET /_sim/stats`` (token and Graph requests per tenant, and the last report served);
- ``GET /_sim/events`` (every answered request: kind, app, tenant, arrival, completion) and
  ``GET /_sim/counts`` (answered requests by kind, cheap enough to poll);
- ``POST /_sim/faults`` ``{"tenant": NAME, "fault": KIND, "count": N}`` (``"count": 0`` means
  until cleared; ``"fault": null`` clears), or ``{"tenant": NAME, "rate": 0.3}`` (random faults
  for that tenant only), and ``POST /_sim/tenants`` (add a tenant with a
  secret, a certificate or a federated token).

Modules: ``tls`` (certificates and assertion checks), ``directory`` (tenants, users, report
documents), ``handlers`` (HTTP routes and faults), ``state`` (tenants, tokens, limits, the
request log), ``simulator`` (the state served over HTTPS: ``Simulator``), ``cli``. This package
imports none of them: import what you use from its module.
Faults: see :data:`GRAPH_FAULTS` and :data:`TOKEN_FAULTS`; ``--fault-rate`` injects a random
Graph fault into that share of report requests.
"""
