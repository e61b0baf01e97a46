using Integration.Host;

var builder = WebApplication.CreateBuilder(args);
builder.AddIntegrationHost();
var app = builder.Build();
app.MapIntegrationHost();
await app.RunAsync();

/// <summary>Entry point; public so tests can host it with <c>WebApplicationFactory&lt;Program&gt;</c>.</summary>
public partial class Program;
