import gc
import os

import django
from django.conf import settings

from memicos_site.cpu_gate import CpuGate
from memicos_site.handler import Handler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "memicos_site.settings")
django.setup(set_prefix=False)  # what get_wsgi_application() does, with our handler (memicos_site/handler.py)

django_application = Handler()
application = CpuGate(settings.WEB_CPU_SLOTS, settings.WEB_CPU_SLOT_WAIT_MS / 1000).wrap(django_application)

# The ~100,000 objects of the loaded code (modules, models, URL patterns) live as long as the process: out of the
# cyclic collector's sight, a full collection no longer walks them. After 1,200 page and API requests one took 72–78 ms,
# holding the GIL against every thread of the process; frozen, 7 ms.
gc.collect()
gc.freeze()
