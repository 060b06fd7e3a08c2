"""Journey URLs for tests/test_scope.py. Journeys are firm-wide objects reached by role (operators and admins):
advisors and branch managers get 404 by role; the step run belongs to the Shanghai customer."""


def _journey(objs) -> int:
    from sop.models import Journey

    journey, _ = Journey.objects.get_or_create(
        name="上海范围测试旅程", defaults={"draft": {"trigger": {"type": "manual"}, "start": "w",
                                                  "steps": [{"id": "w", "type": "wait", "minutes": 60}]}})
    return journey.pk


def _dead_step_run(objs) -> int:
    from sop.models import Enrollment, Journey, JourneyVersion, StepRun

    journey = Journey.objects.get(pk=_journey(objs))
    version, _ = JourneyVersion.objects.get_or_create(journey=journey, number=1,
                                                      defaults={"definition": journey.draft, "trigger_type": "manual"})
    enrollment, _ = Enrollment.objects.get_or_create(journey=journey, version=version, customer=objs["customer"],
                                                     trigger_key="scope")
    run, _ = StepRun.objects.get_or_create(enrollment=enrollment, step_id="w", step_type="wait",
                                           idempotency_key=f"{enrollment.pk}:{version.pk}:w",
                                           defaults={"status": "dead", "due_at": enrollment.entered_at, "error": "x"})
    return run.pk


PAGES_WITHOUT_OBJECTS = {"sop:list", "sop:journey_create"}
OBJECT_KWARGS = {
    "sop_journey_id": _journey,
    "sop_step_id": lambda objs: "w",
    "sop_step_run_id": _dead_step_run,
}
