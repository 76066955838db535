"""Sign a user up: the handler the README's first example asks the agents to harden."""

USERS = {}


def signup(request):
    """Create a user from a request body {"email": ..., "password": ...}.

    Returns (status, body).
    """
    email = request["email"]
    password = request["password"]
    USERS[email] = {"email": email, "password": password}
    return 201, {"email": email}
