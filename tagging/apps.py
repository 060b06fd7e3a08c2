from django.apps import AppConfig


class TaggingConfig(AppConfig):
    name = "tagging"
    verbose_name = "标签"

    def ready(self):
        from core.events import NoteCreated, subscribe
        from tagging.conversation import note_created_scan

        # conversation tags: every saved note is scanned into tag suggestions (after commit)
        subscribe(NoteCreated, note_created_scan)
        # rule tags and tiers follow new trades and events
        from tagging.subscribers import subscriptions

        subscriptions()
