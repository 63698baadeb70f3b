"""One router per resource; ``qi.api.app.ROUTERS`` lists the ones the app includes."""
