# JupyterLab (jupyter-server 2.x) behind samlgate: deploy/examples/jupyterlab/samlgate.toml.
#
# Start: jupyter lab --config=/path/to/jupyter_server_config.py
#
# Jupyter Server has no built-in "trust a header" login. It has a documented extension point,
# the IdentityProvider (ServerApp.identity_provider_class, jupyter-server >= 2.0): its
# get_user(handler) decides who makes each request. The class below trusts X-Forwarded-User,
# which samlgate sets on every request it forwards and strips from every client request.
# That is only safe because the server listens on 127.0.0.1 (below): nothing but samlgate, and
# other processes on this host, can reach it. On a shared host, any local user could connect
# to 127.0.0.1:8888 and send the header: run JupyterLab in its own container or VM, or behind
# a firewall rule that admits only samlgate's user (iptables -m owner).
#
# JupyterLab is single-user: everyone who gets in runs code as the same Unix account. So this
# admits exactly one person, checked twice: samlgate's authz.allowed_users, and JUPYTER_USER
# here, so that a mistake in one of the two does not open the server to everybody else the IdP
# knows. For several users, run JupyterHub instead (see README.md next to this file).
#
# Reference: https://jupyter-server.readthedocs.io/en/latest/operators/security.html
# (Identity Providers).
from jupyter_server.auth.identity import IdentityProvider, User

# The one user allowed in: the value samlgate puts in X-Forwarded-User (the NameID, or
# headers.user_attribute). Must match authz.allowed_users in samlgate.toml.
JUPYTER_USER = "alice@example.com"


class SamlgateIdentityProvider(IdentityProvider):
    """The user is whoever samlgate says, and only JUPYTER_USER is let in."""

    def get_user(self, handler):
        username = handler.request.headers.get("X-Forwarded-User", "")
        if username != JUPYTER_USER:
            # Not authenticated: API requests get 403, pages a redirect to /login, which
            # cannot log anyone in (there is no token or password).
            return None
        name = handler.request.headers.get("X-Forwarded-Preferred-Username") or username
        return User(username=username, name=name, display_name=name)


c = get_config()  # noqa: F821 (provided by the Jupyter config loader)

c.ServerApp.identity_provider_class = SamlgateIdentityProvider
# No token and no password: identity comes from samlgate only.
c.IdentityProvider.token = ""

# Loopback only; samlgate's upstream is http://127.0.0.1:8888.
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = 8888
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
# samlgate passes the browser's Host (notebook.example.com:8443) through, which Jupyter's
# DNS-rebinding guard would otherwise refuse (403) on a loopback-bound server. Naming the public
# host keeps the guard for every other name. Jupyter compares the Origin of API and WebSocket
# requests with that same Host, so no allow_origin setting is needed.
c.ServerApp.local_hostnames = ["localhost", "notebook.example.com"]
