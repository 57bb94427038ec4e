"""Response headers that Django's SecurityMiddleware does not set (Django 5.2 has no CSP support)."""

from django.conf import settings


def content_security_policy(get_response):
    def middleware(request):
        response = get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:  # a view may set a stricter one
            response["Content-Security-Policy"] = policy
        return response

    return middleware
