from django.http import JsonResponse


def api_not_found(request):
    return JsonResponse({"message": f"No API route {request.method} {request.path}"}, status=404)
