package dev.outboard.api;

import dev.outboard.JsonSerializable;
import dev.outboard.store.UsageLedger;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.time.format.DateTimeParseException;
import java.time.temporal.ChronoUnit;
import java.util.List;
import org.apache.pekko.http.javadsl.model.StatusCodes;
import org.apache.pekko.http.javadsl.server.AllDirectives;
import org.apache.pekko.http.javadsl.server.Route;

/**
 * {@code GET /v1/usage?from=YYYY-MM-DD&to=YYYY-MM-DD}: the org's token usage per UTC day (default
 * the last 30).
 */
public final class UsageRoutes extends AllDirectives {
  private static final int MAX_DAYS = 366;

  public record UsageReport(String org, String from, String to, List<UsageLedger.Day> days)
      implements JsonSerializable {}

  private final Auth auth;
  private final UsageLedger ledger;

  public UsageRoutes(Auth auth, UsageLedger ledger) {
    this.auth = auth;
    this.ledger = ledger;
  }

  public Route routes() {
    return path(
        "usage",
        () ->
            get(
                () ->
                    auth.org(
                        org ->
                            QueryParams.only(
                                List.of("from", "to"),
                                () ->
                                    parameterOptional(
                                        "from",
                                        from ->
                                            parameterOptional(
                                                "to",
                                                to -> {
                                                  LocalDate last =
                                                      to.map(t -> date("to", t))
                                                          .orElse(LocalDate.now(ZoneOffset.UTC));
                                                  LocalDate first =
                                                      from.map(f -> date("from", f))
                                                          .orElse(last.minusDays(29));
                                                  if (first.isAfter(last))
                                                    throw ApiError.badRequest(
                                                        "from must not be after to");
                                                  if (ChronoUnit.DAYS.between(first, last)
                                                      >= MAX_DAYS)
                                                    throw ApiError.badRequest(
                                                        "at most " + MAX_DAYS + " days at once");
                                                  // What this node has not written yet counts too.
                                                  return onSuccess(
                                                      ledger
                                                          .flush()
                                                          .thenCompose(
                                                              v -> ledger.days(org, first, last)),
                                                      days ->
                                                          complete(
                                                              StatusCodes.OK,
                                                              new UsageReport(
                                                                  org,
                                                                  first.toString(),
                                                                  last.toString(),
                                                                  days),
                                                              JsonSupport.marshaller()));
                                                }))))));
  }

  private static LocalDate date(String name, String value) {
    try {
      return LocalDate.parse(value);
    } catch (DateTimeParseException e) {
      throw ApiError.badRequest(name + " must be a date such as 2026-12-03");
    }
  }
}
