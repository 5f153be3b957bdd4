from django.apps import AppConfig
from django.core import checks
from django.utils.translation import gettext_lazy as _


class PhonemesConfig(AppConfig):
    name = "phonemes"
    verbose_name = _("Phoneme similarity")

    def ready(self):
        from phonemes.checks import check_limits  # imports the models: not before ready()

        checks.register(check_limits)
