using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;
using Integration.Patterns.Normalization;
using Integration.Patterns.Postgres;
using Integration.Patterns.Postgres.ClaimCheck;
using Integration.Patterns.Routing;
using MassTransit;
using NUnit.Framework;

namespace Integration.Patterns.Tests.PublicApi;

/// <summary>
/// The public surface of the two packages: what users need and nothing else (filters, specifications and plumbing are
/// internal), at most one type parameter per public type, stable wire names for the contracts they own, and a baseline
/// of every public type and member (<c>Integration.Patterns.txt</c>, <c>Integration.Patterns.Postgres.txt</c> beside
/// this file). After an intended change, run with <c>INTEGRATION_UPDATE_PUBLIC_API=1</c> and review the diff.
/// </summary>
[TestFixture]
public sealed class PublicApi_Specs
{
    static readonly Assembly[] Packages = [typeof(RouteControl).Assembly, typeof(PatternStoreRegistration).Assembly];

    static IEnumerable<Type> Exported => Packages.SelectMany(a => a.GetExportedTypes());

    [Test]
    public void Should_have_at_most_one_type_parameter_on_every_public_type()
    {
        Assert.That(Exported.Where(t => t.GetGenericArguments().Length > 1).Select(t => t.FullName), Is.Empty);
    }

    [Test]
    public void Should_keep_filters_specifications_and_plumbing_internal()
    {
        var names = Exported.Select(t => t.Name.Split('`')[0]).ToList();

        Assert.That(names.Where(n => n.EndsWith("Filter", StringComparison.Ordinal) || n.EndsWith("Specification", StringComparison.Ordinal)), Is.Empty);
        Assert.That(names, Has.None.AnyOf("RouteCatalog", "RouteStepContext", "IRouteStepSpecification", "IRouteBridgeSpecification", "IRouteWorker",
            "RouteEnvelope", "PatternMetrics", "PatternStore", "ItineraryCatalog", "AesGcmMessageSerializer", "FormatReader"));
    }

    [Test]
    public void Should_let_only_the_library_implement_the_route_configurator()
    {
        var members = typeof(IRouteConfigurator<>).GetMethods(BindingFlags.Instance | BindingFlags.NonPublic).Select(m => m.Name);

        Assert.That(members, Is.SupersetOf(new[] { "AddStep", "ContinueWith" }), "steps are added by the library's extension methods");
    }

    [Test]
    public void Should_give_the_contracts_on_the_wire_names_independent_of_the_clr_namespaces()
    {
        Assert.That(MessageUrn.ForTypeString<ClaimTicket>(), Is.EqualTo("urn:message:integration:claim-ticket"));
        Assert.That(MessageUrn.ForTypeString<RawDocument>(), Is.EqualTo("urn:message:integration:raw-document"));
    }

    [TestCase("Integration.Patterns")]
    [TestCase("Integration.Patterns.Postgres")]
    public void Should_match_the_public_api_baseline(string package)
    {
        var assembly = Packages.Single(a => a.GetName().Name == package);
        var actual = Describe(assembly);
        var path = Path.Combine(SourceDirectory(), package + ".txt");
        if (Environment.GetEnvironmentVariable("INTEGRATION_UPDATE_PUBLIC_API") == "1")
            File.WriteAllText(path, actual);

        Assert.That(File.Exists(path), Is.True, $"no baseline {path}; run with INTEGRATION_UPDATE_PUBLIC_API=1");
        Assert.That(actual, Is.EqualTo(File.ReadAllText(path).ReplaceLineEndings("\n")),
            "the public API changed; if intended, run with INTEGRATION_UPDATE_PUBLIC_API=1 and commit the baseline");
    }

    static string SourceDirectory([CallerFilePath] string file = "") => Path.GetDirectoryName(file)!;

    static string Describe(Assembly assembly)
    {
        const BindingFlags Declared = BindingFlags.DeclaredOnly | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;
        var text = new StringBuilder();
        foreach (var type in assembly.GetExportedTypes().OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            text.Append(Kind(type)).Append(' ').Append(type.FullName).Append('\n');
            var members = type.GetMembers(Declared)
                .Where(m => IsVisible(m) && !m.Name.StartsWith('<') && !(m is MethodInfo { IsSpecialName: true } method && (method.Name.StartsWith("get_", StringComparison.Ordinal) || method.Name.StartsWith("set_", StringComparison.Ordinal) || method.Name.StartsWith("add_", StringComparison.Ordinal) || method.Name.StartsWith("remove_", StringComparison.Ordinal))))
                .Select(Signature)
                .Order(StringComparer.Ordinal);
            foreach (var member in members)
                text.Append("  ").Append(member).Append('\n');
        }

        return text.ToString();
    }

    static string Kind(Type type) => type.IsInterface ? "interface" : type.IsEnum ? "enum" : type.IsValueType ? "struct"
        : type.IsAbstract && type.IsSealed ? "static class" : type.IsSubclassOf(typeof(Delegate)) ? "delegate" : "class";

    static bool IsVisible(MemberInfo member) => member switch
    {
        MethodBase m => m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly,
        FieldInfo f => f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly,
        PropertyInfo p => (p.GetMethod ?? p.SetMethod) is { } accessor && IsVisible(accessor),
        EventInfo e => e.AddMethod is { } add && IsVisible(add),
        Type t => t.IsNestedPublic || t.IsNestedFamily,
        _ => false,
    };

    static string Signature(MemberInfo member) => member switch
    {
        PropertyInfo p => $"property {Name(p.PropertyType)} {p.Name} {{ {(p.GetMethod is { } g && IsVisible(g) ? "get; " : "")}{(p.SetMethod is { } s && IsVisible(s) ? (s.ReturnParameter.GetRequiredCustomModifiers().Contains(typeof(IsExternalInit)) ? "init; " : "set; ") : "")}}}",
        FieldInfo f => $"{(f.IsLiteral ? "const" : f.IsStatic ? "static field" : "field")} {Name(f.FieldType)} {f.Name}",
        ConstructorInfo c => $"ctor({Parameters(c)})",
        MethodInfo m => $"{(m.IsStatic ? "static " : "")}method {Name(m.ReturnType)} {m.Name}{(m.IsGenericMethod ? "<" + string.Join(", ", m.GetGenericArguments().Select(Name)) + ">" : "")}({Parameters(m)})",
        EventInfo e => $"event {Name(e.EventHandlerType!)} {e.Name}",
        Type t => $"nested {Kind(t)} {t.Name}",
        _ => member.ToString()!,
    };

    static string Parameters(MethodBase method) =>
        string.Join(", ", method.GetParameters().Select(p => $"{Name(p.ParameterType)} {p.Name}{(p.HasDefaultValue ? " = " + (p.DefaultValue ?? "null") : "")}"));

    static string Name(Type type)
    {
        if (type.IsGenericParameter)
            return type.Name;
        if (type.IsByRef)
            return Name(type.GetElementType()!) + "&";
        if (type.IsArray)
            return Name(type.GetElementType()!) + "[]";
        var name = type.IsNested ? Name(type.DeclaringType!) + "." + type.Name : (type.Namespace is { Length: > 0 } ns ? ns + "." : "") + type.Name;
        if (!type.IsGenericType)
            return name;
        return name.Split('`')[0] + "<" + string.Join(", ", type.GetGenericArguments().Select(Name)) + ">";
    }
}
