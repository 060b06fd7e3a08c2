"""Templates and their approval, blocked touches, the trading calendar and guard settings."""

urlpatterns = []
